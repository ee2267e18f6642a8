//! `ras predict` end to end on CPU: a tiny run on a tiny synthetic dataset, then the
//! binary on one class's test folder with a corrupt file among the images. The scores
//! must be the ones the run's own evaluation stored for the same images: that is the
//! whole promise of the command ("exactly as evaluation does").

mod common;
use common::*;
use ras::config::RunConfig;
use ras::progress::Progress;
use ras::run::{execute, RunOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn decode(path: &Path) -> BTreeMap<String, tch::Tensor> {
    ras::store::tensors::decode(&std::fs::read(path).unwrap()).unwrap().into_iter().collect()
}

fn floats(t: &tch::Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(tch::Kind::Float).contiguous().view(-1)).unwrap()
}

/// predictions.csv as (path, class, score, threshold, anomalous) strings.
fn read_csv(path: &Path) -> Vec<[String; 5]> {
    let mut r = csv::Reader::from_path(path).unwrap();
    assert_eq!(r.headers().unwrap(), vec!["path", "class", "score", "threshold", "anomalous"]);
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            std::array::from_fn(|i| rec[i].to_string())
        })
        .collect()
}

fn text(out: &std::process::Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The picture name `ras predict` gives a row's image: its stem, or where stems repeat,
/// its path below the folder given with '/' -> '_'.
fn picture_name(row: &[String; 5], rows: &[[String; 5]], folder: &Path) -> String {
    let stem = |r: &[String; 5]| Path::new(&r[0]).file_stem().unwrap().to_string_lossy().into_owned();
    let name = if rows.iter().filter(|r| stem(r) == stem(row)).count() > 1 {
        let rel = Path::new(&row[0]).strip_prefix(folder).unwrap().with_extension("");
        rel.iter().map(|c| c.to_string_lossy().into_owned()).collect::<Vec<_>>().join("_")
    } else {
        stem(row)
    };
    format!("{name}.png")
}

/// A `ras predict` picture of a 128 px image: the colour bar's ramp and threshold mark,
/// and the verdict band below (drawn again here from the CSV row's numbers: the same
/// pixels, so the same text).
fn check_picture(path: &Path, row: &[String; 5], vmax: f64) {
    use ras::eval::legend::{self, bar_row, BAR_PANEL, BAR_X, THRESHOLD_MARK};
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8();
    let (size, p) = (128, path.display());
    assert_eq!(img.width(), 2 * size + BAR_PANEL, "{p}");
    assert!(img.height() > size, "{p}: a text band below the panels");
    let (score, threshold): (f32, f64) = (row[2].parse().unwrap(), row[3].parse().unwrap());
    let mid = 2 * size + (BAR_X.0 + BAR_X.1) / 2;
    let px = |y| img.get_pixel(mid, y).0;
    let (top, bottom) = (bar_row(vmax, vmax, size), bar_row(0.0, vmax, size));
    assert_eq!((px(top), px(bottom)), ([128, 0, 0], [0, 0, 128]), "{p}: the ramp, dark red at the top to dark blue");
    let marks: Vec<u32> = (0..size).filter(|&y| px(y) == THRESHOLD_MARK).collect();
    assert_eq!(marks, [bar_row(threshold, vmax, size)], "{p}: the threshold {threshold} on the scale 0..{vmax}");

    let caption = legend::verdict_caption(score, Some(threshold));
    let verdict = if row[4] == "true" { "ANOMALOUS" } else { "normal" };
    assert!(caption.text.ends_with(&format!(": {verdict}")), "{p}: {} for the row {row:?}", caption.text);
    let mut want = image::RgbImage::new(img.width(), img.height());
    let (glyphs, lines) = legend::footer_lines(&[caption], img.width());
    assert_eq!(img.height(), size + legend::footer_height(lines.len(), glyphs), "{p}");
    legend::draw_footer(&mut want, size, glyphs, &lines);
    for y in size..img.height() {
        for x in 0..img.width() {
            assert_eq!(img.get_pixel(x, y), want.get_pixel(x, y), "{p}: the text band at ({x}, {y})");
        }
    }
}

#[test]
fn predict_reproduces_the_runs_scores_and_skips_a_corrupt_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = synth_dataset(dir.path(), 2, 91, 128, 4);
    let cfg_path = small_config(dir.path(), &root, "pred", "");
    // Test-time jitter on: its noise is seeded per image, so matching the stored scores
    // also checks that images are numbered as the evaluation numbers its test set (in
    // test order, per class, across --batch chunks, not counting the corrupt file).
    let sets = ["train.epochs=2", "train.eval_every=1", "backbone.image_size=128", "eval.test_jitter_scale=20.0"];
    let cfg = RunConfig::load(&cfg_path, &sets.map(String::from)).unwrap();
    let run = execute(&cfg, &RunOptions::new(Progress::hidden(), false)).unwrap();
    let id = run.run_id.as_str();
    let store_dir = dir.path().join("store");
    let store_url = format!("file://{}", store_dir.display());
    let run_dir = store_dir.join("runs").join(id);

    // What the run's evaluation stored for class grain, in test order.
    let class = "grain";
    let samples: Vec<ras::data::Sample> =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join(format!("predictions/{class}.json"))).unwrap())
            .unwrap();
    let stored_scores = floats(&decode(&run_dir.join(format!("predictions/{class}.safetensors")))["scores"]);
    let stored: BTreeMap<PathBuf, f32> =
        samples.iter().map(|s| s.path.canonicalize().unwrap()).zip(stored_scores).collect();
    let fm = json(&run_dir.join("final_metrics.json"));
    let threshold = fm["metrics"]["classes"][class]["image_threshold"]
        .as_f64()
        .expect("new runs record the image F1-max threshold");

    // The class's test folder plus a file that is not an image.
    let test_dir = root.join(class).join("test");
    std::fs::write(test_dir.join("x.png"), b"not a png at all").unwrap();
    let out_dir = dir.path().join("out");
    let out = ras(
        &[
            "predict",
            id,
            test_dir.to_str().unwrap(),
            "--store",
            &store_url,
            "--out",
            out_dir.to_str().unwrap(),
            "--batch",
            "5",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "partial: one input skipped\n{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("x.png"), "the corrupt file is listed\n{}", text(&out));

    let rows = read_csv(&out_dir.join("predictions.csv"));
    assert_eq!(rows.len(), samples.len(), "one row per readable image\n{}", text(&out));
    let mut scores = vec![];
    for [path, row_class, score, thr, anomalous] in &rows {
        assert_eq!(row_class, class, "{path}");
        let score: f32 = score.parse().unwrap();
        let expected = stored[&Path::new(path).canonicalize().unwrap()];
        assert!((score - expected).abs() <= 1e-5, "{path}: predicted {score}, the run stored {expected}");
        assert_eq!(thr.parse::<f64>().unwrap(), threshold, "{path}");
        assert_eq!(
            anomalous,
            &(f64::from(score) >= threshold).to_string(),
            "{path}: score {score}, threshold {threshold}"
        );
        scores.push(score);
    }
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains(&format!("{} images scored", rows.len())), "{summary}");

    let maps = decode(&out_dir.join("maps.safetensors"));
    assert_eq!(maps["maps"].size(), [rows.len() as i64, 128, 128]);
    assert_eq!(maps["maps"].kind(), tch::Kind::Float);
    assert_eq!(maps["scores"].size(), [rows.len() as i64]);
    assert_eq!(floats(&maps["scores"]), scores, "maps.safetensors scores in CSV row order");

    let pngs = files(&out_dir.join("png"));
    assert_eq!(pngs.len(), rows.len(), "one picture per image: {pngs:?}");
    for p in &pngs {
        assert!(p.ends_with(".png") && !p.starts_with('.'), "{p}");
    }
    // Each picture: image | overlay | colour bar on the class's scale (the largest map
    // value the run stored for it) with the threshold marked at its height, and below,
    // the score against the threshold and the verdict of the CSV row.
    let vmax = decode(&run_dir.join(format!("predictions/{class}.safetensors")))["maps"].max().double_value(&[]);
    for row in &rows {
        check_picture(&out_dir.join("png").join(picture_name(row, &rows, &test_dir)), row, vmax);
    }
    assert!(files(&out_dir).iter().all(|f| !f.ends_with(".tmp")), "no temporary files left: {:?}", files(&out_dir));

    // A run from before thresholds were recorded: computed again from its stored
    // predictions, the same value. One image, class given, all readable: exit 0.
    let mut old = fm.clone();
    for (_, m) in old["metrics"]["classes"].as_object_mut().unwrap() {
        m.as_object_mut().unwrap().remove("image_threshold");
    }
    std::fs::write(run_dir.join("final_metrics.json"), old.to_string()).unwrap();
    let one = samples[0].path.to_str().unwrap();
    let out2_dir = dir.path().join("out2");
    let out2 = ras(
        &["predict", id, one, "--class", class, "--store", &store_url, "--out", out2_dir.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(out2.status.code(), Some(0), "{}", text(&out2));
    let rows2 = read_csv(&out2_dir.join("predictions.csv"));
    assert_eq!(rows2.len(), 1);
    assert_eq!(rows2[0][3].parse::<f64>().unwrap(), threshold, "threshold from the stored predictions");

    // An unknown class names the valid ones; an unfinished run names `ras train`.
    let bad = ras(&["predict", id, one, "--class", "nope", "--store", &store_url], dir.path());
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("nope") && err.contains("grain, weave"), "{err}");
    let config = std::fs::read_to_string(run_dir.join("config.toml")).unwrap().replace("epochs = 2", "epochs = 3");
    std::fs::write(run_dir.join("config.toml"), config).unwrap();
    let unfinished = ras(&["predict", id, one, "--store", &store_url], dir.path());
    assert_eq!(unfinished.status.code(), Some(1));
    let err = String::from_utf8_lossy(&unfinished.stderr);
    assert!(err.contains(id) && err.contains("epoch 2 of 3") && err.contains("ras train"), "{err}");
}
