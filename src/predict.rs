//! `ras predict`: a finished run's final model applied to new images, one score and one
//! S x S anomaly map per image, each labelled anomalous or normal at its class's image
//! F1-max threshold from the run's own evaluation.
//!
//! "Exactly as evaluation does" is the contract: the images go through the same
//! pre-processing (`data::imageio::load_image`), the same backbone (the run's config, its
//! weights file checked against the run's recorded identity), and the same
//! `eval::predict` with the run's `eval.test_jitter_scale` and seed. An image of the
//! run's test set therefore gets the score the run stored for it. With test-time jitter
//! on, the noise of an image is seeded by its row among the images of its class in
//! this call (as evaluation seeds it by the test index), so a class's test folder given
//! whole and in test order reproduces the run's numbers.
//!
//! Outputs in the chosen folder, each written under a temporary name and then renamed so
//! that a killed call never leaves a half-written file under the final name:
//! - `predictions.csv`  path, class, score, threshold, anomalous (written last)
//! - `maps.safetensors` `maps` (N, S, S) f32 and `scores` (N) f32, in CSV row order
//! - `png/<name>.png`   image | heat map over the image | its colour bar (scale, threshold
//!   marked), and below "score X >= threshold Y: ANOMALOUS" (or "< ...: normal")
//!
//! Unreadable inputs are skipped and reported in [`PredictSummary::skipped`]: one bad
//! file in a folder of thousands should not cost the other results.

use crate::backbone::{BackboneIdentity, FeatureExtractor};
use crate::config::{DeviceSpec, RunConfig, Setting};
use crate::data::imageio;
use crate::eval::{metrics, pictures, predict_from};
use crate::progress::Progress;
use crate::run::{load_trained, resolve_device, Checkpointer, FinalMetrics, RunPaths, TrainedModel, TrainedWeights};
use crate::store::{tensors, Store};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// File extensions `ras predict` collects from folders (case-insensitive). TIFF is listed
/// because datasets ship it; this build decodes png, jpeg and bmp, so a TIFF file is
/// reported as skipped with the decoder's reason rather than silently ignored.
pub const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff"];

/// What `predict_images` needs besides the run and the images.
#[derive(Debug, Clone)]
pub struct PredictOptions {
    /// Output folder (created if missing).
    pub out: PathBuf,
    /// The class of every image; None: found in each image's path.
    pub class: Option<String>,
    /// Images per backbone and model pass; None: the run's `eval.batch_size`.
    pub batch: Option<usize>,
    /// Where to compute; None: the run's `train.device`.
    pub device: Option<DeviceSpec>,
}

impl PredictOptions {
    /// The default output folder of a run: `predictions/<run id>`.
    pub fn default_out(run: &str) -> PathBuf {
        Path::new("predictions").join(run)
    }
}

/// Why `predict_images` refused to run (every other failure is an I/O or store error).
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error("no run {run} in {store} (no {key}); `ras status SWEEP` lists a sweep's run ids")]
    UnknownRun { run: String, store: String, key: String },
    #[error(
        "run {run} is not finished: model {model:?} has its latest valid checkpoint at epoch {epoch} of {epochs}; \
         finish it with `ras train <its config>` (it resumes from that checkpoint), then predict"
    )]
    NotFinished { run: String, model: String, epoch: usize, epochs: usize },
    #[error("--class {class:?} is not a class of run {run} (its classes: {valid})")]
    UnknownClass { class: String, run: String, valid: String },
    #[error("--batch must be at least 1")]
    ZeroBatch,
    #[error("no image files (.{}) in {}", IMAGE_EXTENSIONS.join(", ."), .inputs.join(", "))]
    NoImages { inputs: Vec<String> },
    #[error("no image could be scored, all {} skipped:\n{}", .skipped.len(), list_skipped(.skipped))]
    NothingScored { skipped: Vec<Skipped> },
    #[error(
        "the backbone differs from the one run {run} was trained with ({what}: run {recorded}, now {now}); \
         its scores would not be the run's. Use the run's backbone.weights file"
    )]
    BackboneChanged { run: String, what: &'static str, recorded: String, now: String },
}

fn list_skipped(skipped: &[Skipped]) -> String {
    skipped.iter().map(|s| format!("  {}: {}", s.path.display(), s.reason)).collect::<Vec<_>>().join("\n")
}

/// An input that produced no row, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// What a call of `predict_images` did.
#[derive(Debug, Clone)]
pub struct PredictSummary {
    pub run: String,
    /// The folder the outputs went to.
    pub out: PathBuf,
    /// Rows of predictions.csv (images scored).
    pub images: usize,
    /// Rows labelled anomalous (score >= their class's threshold).
    pub anomalous: usize,
    /// Rows without a threshold (no class, or a class the run has none for).
    pub unlabelled: usize,
    /// Inputs without a row: unreadable, missing, or without a class in the separate
    /// setting. Non-empty means a partial result (exit code 2).
    pub skipped: Vec<Skipped>,
    /// Things the user should know that did not stop the call (missing thresholds).
    pub warnings: Vec<String>,
}

impl PredictSummary {
    /// Some inputs were skipped: the outputs cover the rest (exit code 2).
    pub fn is_partial(&self) -> bool {
        !self.skipped.is_empty()
    }

    /// The warnings and the skipped inputs, one line each (for stderr).
    pub fn render_problems(&self) -> String {
        let warnings = self.warnings.iter().map(|w| format!("warning: {w}\n"));
        let skipped = self.skipped.iter().map(|s| format!("skipped {}: {}\n", s.path.display(), s.reason));
        warnings.chain(skipped).collect()
    }

    /// What `ras predict` prints on stdout.
    pub fn render(&self) -> String {
        let unlabelled =
            if self.unlabelled > 0 { format!(", {} without a threshold", self.unlabelled) } else { String::new() };
        let mut s = format!(
            "{} images scored with run {}: {} anomalous{unlabelled}; outputs in {} (predictions.csv, maps.safetensors, png/)\n",
            self.images,
            self.run,
            self.anomalous,
            self.out.display()
        );
        if self.is_partial() {
            let n = self.skipped.len();
            s += &format!("{n} input{} skipped (listed on stderr)\n", if n == 1 { "" } else { "s" });
        }
        s
    }
}

/// One input image, before it is read.
#[derive(Debug, Clone)]
struct Input {
    /// The path as given or as found under a given folder (what the CSV shows).
    path: PathBuf,
    /// The path below the folder it was found in (the path itself for a file argument):
    /// what makes picture names unique.
    rel: PathBuf,
    class: Option<String>,
}

/// Per class: the threshold labelling its images and the colour scale of its pictures.
#[derive(Debug, Clone)]
struct ClassRef {
    threshold: Option<f64>,
    /// The largest value of the run's stored maps of this class (None: not stored).
    vmax: Option<f64>,
}

/// A scored image: its input, score, and map (S, S) on the CPU.
struct Row {
    input: Input,
    score: f32,
    map: Tensor,
}

/// Scores `inputs` (image files, or folders searched recursively for
/// [`IMAGE_EXTENSIONS`], sorted) with the final model of run `run` in `store` and writes
/// the outputs into `opts.out` (module doc). Errors when the run is unknown or not
/// finished, the class is unknown, or no image could be scored; unreadable images alone
/// are not an error (see [`PredictSummary::skipped`]).
pub fn predict_images(
    store: &Store,
    run: &str,
    inputs: &[PathBuf],
    opts: &PredictOptions,
    progress: &Progress,
) -> Result<PredictSummary> {
    let paths = RunPaths::new(run);
    let cfg = crate::run::stored_config(store, &paths)?.ok_or_else(|| PredictError::UnknownRun {
        run: run.into(),
        store: store.url().into(),
        key: paths.config(),
    })?;
    let batch = opts.batch.unwrap_or(cfg.eval.batch_size);
    if batch == 0 {
        return Err(PredictError::ZeroBatch.into());
    }
    let final_metrics: Option<FinalMetrics> = store.get_json(&paths.final_metrics())?;
    let classes = run_classes(&cfg, final_metrics.as_ref());
    if let Some(c) = &opts.class {
        if !classes.contains(c) {
            return Err(
                PredictError::UnknownClass { class: c.clone(), run: run.into(), valid: classes.join(", ") }.into()
            );
        }
    }

    // Which images, of which class; in the separate setting the class picks the model,
    // so an image without one cannot be scored.
    let (found, mut skipped) = collect_inputs(inputs)?;
    if found.is_empty() && skipped.is_empty() {
        return Err(PredictError::NoImages { inputs: inputs.iter().map(|p| p.display().to_string()).collect() }.into());
    }
    let mut todo = vec![];
    for mut input in found {
        input.class = opts.class.clone().or_else(|| class_in_path(&input.path, &classes));
        if input.class.is_none() && cfg.train.setting == Setting::Separate {
            skipped.push(Skipped {
                path: input.path,
                reason: format!(
                    "no class of the run ({}) in its path; the separate setting has one model per class: give --class",
                    classes.join(", ")
                ),
            });
        } else {
            todo.push(input);
        }
    }
    if todo.is_empty() {
        return Err(PredictError::NothingScored { skipped }.into());
    }

    // The models, before any image is decoded: an unfinished run fails fast.
    let device = resolve_device(opts.device.unwrap_or(cfg.train.device))?;
    let identity = check_backbone(store, &paths, &cfg)?;
    let checkpoints = Checkpointer::new(store, &paths);
    let mut models: BTreeMap<String, TrainedModel> = BTreeMap::new();
    for input in &todo {
        let model = model_of(cfg.train.setting, input.class.as_deref());
        if models.contains_key(&model) {
            continue;
        }
        // No checkpoint at all is "not finished" too (epoch 0), not a store error.
        let latest = checkpoints.latest_valid(&model)?;
        let epoch = latest.as_ref().map(|(rec, _)| rec.epoch).unwrap_or(0);
        let Some((rec, bytes)) = latest.filter(|_| epoch >= cfg.train.epochs) else {
            return Err(PredictError::NotFinished { run: run.into(), model, epoch, epochs: cfg.train.epochs }.into());
        };
        let weights = TrainedWeights::Checkpoint(tensors::decode(&bytes)?);
        let t = load_trained(&cfg, identity.channels, identity.grid, device, weights)
            .with_context(|| format!("checkpoint {}", rec.weights))?;
        models.insert(model, t);
    }
    let refs = class_refs(store, &paths, final_metrics.as_ref(), &todo)?;
    let mut warnings = vec![];
    let missing: Vec<&str> = refs.iter().filter(|(_, r)| r.threshold.is_none()).map(|(c, _)| c.as_str()).collect();
    if !missing.is_empty() {
        warnings.push(format!(
            "no image threshold for class(es) {}: run {run}'s final_metrics.json predates recorded thresholds and it stored no \
             predictions (eval.save_predictions) to compute them from; their threshold and anomalous columns are empty",
            missing.join(", ")
        ));
    }

    // Score, a batch of files at a time: decode (skipping what does not decode), backbone,
    // then each class's rows through its model.
    let extractor = FeatureExtractor::new(&cfg.backbone, device)?;
    let size = cfg.backbone.image_size;
    let bar = progress.bar(todo.len() as u64, "predict");
    let mut rows: Vec<Row> = vec![];
    // Rows scored so far per class: the jitter noise's sample index (module doc).
    let mut seen: BTreeMap<Option<String>, usize> = BTreeMap::new();
    for chunk in todo.chunks(batch) {
        let mut ok = vec![];
        let mut images = vec![];
        for input in chunk {
            match imageio::load_image(&input.path, size) {
                Ok(t) => {
                    images.push(t);
                    ok.push(input.clone());
                }
                Err(e) => skipped.push(Skipped { path: input.path.clone(), reason: crate::error_text::chain(&e) }),
            }
        }
        bar.inc(chunk.len() as u64);
        if images.is_empty() {
            continue;
        }
        let feats = extractor.extract(&Tensor::stack(&images, 0)).to_device(Device::Cpu);
        let mut scored: Vec<Option<(f32, Tensor)>> = (0..ok.len()).map(|_| None).collect();
        let mut by_class: BTreeMap<Option<String>, Vec<usize>> = BTreeMap::new();
        for (j, input) in ok.iter().enumerate() {
            by_class.entry(input.class.clone()).or_default().push(j);
        }
        for (class, members) in by_class {
            let trained = &models[&model_of(cfg.train.setting, class.as_deref())];
            let index = Tensor::from_slice(&members.iter().map(|&j| j as i64).collect::<Vec<_>>());
            let first = seen.entry(class).or_default();
            let p = predict_from(
                &trained.model,
                &feats.index_select(0, &index),
                *first,
                size,
                batch,
                cfg.eval.test_jitter_scale,
                cfg.seed,
                device,
            );
            *first += members.len();
            let scores = Vec::<f32>::try_from(p.scores.to_kind(Kind::Float).contiguous()).expect("float scores");
            for (k, &j) in members.iter().enumerate() {
                scored[j] = Some((scores[k], p.maps.get(k as i64)));
            }
        }
        for (input, s) in ok.into_iter().zip(scored) {
            let (score, map) = s.expect("every decoded image is in one class group");
            rows.push(Row { input, score, map });
        }
    }
    bar.finish_and_clear();
    if rows.is_empty() {
        return Err(PredictError::NothingScored { skipped }.into());
    }
    let summary = write_outputs(&opts.out, &rows, &refs, progress)?;
    Ok(PredictSummary {
        run: run.into(),
        out: opts.out.clone(),
        images: rows.len(),
        anomalous: summary.0,
        unlabelled: summary.1,
        skipped,
        warnings,
    })
}

/// The run's classes: those its final metrics report, else its config's list, else the
/// class folders of its dataset if that is on this machine (a run whose final outputs
/// were never written), else none.
fn run_classes(cfg: &RunConfig, fm: Option<&FinalMetrics>) -> Vec<String> {
    if let Some(fm) = fm {
        return fm.metrics.classes.keys().cloned().collect();
    }
    if !cfg.dataset.classes.is_empty() {
        return cfg.dataset.classes.clone();
    }
    crate::data::scan_all(&cfg.dataset).map(|s| s.index.class_names()).unwrap_or_default()
}

/// The model serving an image of `class` (unified: one for all, with or without a class).
fn model_of(setting: Setting, class: Option<&str>) -> String {
    setting.model_name(class.unwrap_or_default()).to_string()
}

/// The class of an image from its path: the last folder name (from the end) that is one
/// of the run's classes, so `data/bottle/test/broken/000.png` is a bottle. The path as
/// given first, then its absolute form (a relative path may not name the class folder:
/// `ras predict RUN .` inside it).
fn class_in_path(path: &Path, classes: &[String]) -> Option<String> {
    let find = |p: &Path| {
        p.parent()?
            .components()
            .rev()
            .filter_map(|c| match c {
                Component::Normal(s) => s.to_str(),
                _ => None,
            })
            .find(|c| classes.iter().any(|k| k == c))
            .map(str::to_string)
    };
    find(path).or_else(|| find(&std::fs::canonicalize(path).ok()?))
}

fn has_image_extension(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

/// The images named by `inputs`, in argument order, each folder's images sorted by path;
/// a missing argument is skipped (reported), not an error. Folders are searched
/// recursively without following symbolic links to folders (no cycles); any file a user
/// names explicitly is tried whatever its extension.
fn collect_inputs(inputs: &[PathBuf]) -> Result<(Vec<Input>, Vec<Skipped>)> {
    let mut found = vec![];
    let mut skipped = vec![];
    for arg in inputs {
        if arg.is_dir() {
            let mut files = vec![];
            walk(arg, &mut files).with_context(|| format!("listing {}", arg.display()))?;
            files.sort();
            for path in files {
                let rel = path.strip_prefix(arg).map(Path::to_path_buf).unwrap_or_else(|_| path.clone());
                found.push(Input { path, rel, class: None });
            }
        } else if arg.exists() {
            found.push(Input { path: arg.clone(), rel: arg.clone(), class: None });
        } else {
            skipped.push(Skipped { path: arg.clone(), reason: "no such file or folder".into() });
        }
    }
    Ok((found, skipped))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(&path, out)?;
        } else if has_image_extension(&path) && path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// The backbone as configured now must be the one the run recorded in env.json (weights
/// hash, pre-processing): a replaced weights file would silently give other scores.
/// Returns the identity (channels and grid of the features).
fn check_backbone(store: &Store, paths: &RunPaths, cfg: &RunConfig) -> Result<BackboneIdentity> {
    let now = BackboneIdentity::resolve(&cfg.backbone)?;
    let env: Option<serde_json::Value> = store.get_json(&paths.env())?;
    let recorded = env.and_then(|e| serde_json::from_value::<BackboneIdentity>(e["backbone"].clone()).ok());
    if let Some(rec) = recorded {
        let changed = |what, a: &str, b: &str| PredictError::BackboneChanged {
            run: paths.id().into(),
            what,
            recorded: a.into(),
            now: b.into(),
        };
        if rec.weights != now.weights {
            return Err(changed("weights", &rec.weights, &now.weights).into());
        }
        // Runs from before the pre-processing was recorded have it empty: nothing to compare.
        if !rec.preprocess.is_empty() && rec.preprocess != now.preprocess {
            return Err(changed("pre-processing", &rec.preprocess, &now.preprocess).into());
        }
    }
    Ok(now)
}

/// Threshold and colour scale of every class among the inputs. The threshold comes from
/// the run's final metrics; for runs from before thresholds were recorded it is computed
/// again from the stored test predictions (the same sweep over the same scores gives the
/// same value). The stored maps also give the colour scale, so a picture of an image
/// looks the same whatever else was predicted with it, and like the run's own pictures.
fn class_refs(
    store: &Store,
    paths: &RunPaths,
    fm: Option<&FinalMetrics>,
    inputs: &[Input],
) -> Result<BTreeMap<String, ClassRef>> {
    let mut refs = BTreeMap::new();
    for class in inputs.iter().filter_map(|i| i.class.clone()) {
        if refs.contains_key(&class) {
            continue;
        }
        let mut r = ClassRef {
            threshold: fm.and_then(|f| f.metrics.classes.get(&class)).and_then(|m| m.image_threshold),
            vmax: None,
        };
        if let Some(bytes) = store.get(&paths.predictions(&class))? {
            let t: BTreeMap<String, Tensor> = tensors::decode(&bytes)?.into_iter().collect();
            if let Some(maps) = t.get("maps") {
                r.vmax = Some(maps.max().double_value(&[]));
            }
            if let (None, Some(scores), Some(labels)) = (r.threshold, t.get("scores"), t.get("labels")) {
                let scores = Vec::<f32>::try_from(scores.to_kind(Kind::Float).contiguous())?;
                let labels: Vec<bool> = Vec::<u8>::try_from(labels.to_kind(Kind::Uint8).contiguous())?
                    .into_iter()
                    .map(|v| v != 0)
                    .collect();
                r.threshold = metrics::ranking_metrics(&scores, &labels).ok().map(|m| m.f1_threshold);
            }
        }
        refs.insert(class, r);
    }
    Ok(refs)
}

/// Unique picture names: the file stem, or where stems repeat the path below its folder
/// ('/' -> '_'), or where even those repeat, that and the row number.
fn picture_names(rows: &[Row]) -> Vec<String> {
    let stem =
        |r: &Row| r.input.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
    let rel = |r: &Row| {
        r.input
            .rel
            .with_extension("")
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                Component::ParentDir => Some("up".into()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("_")
    };
    let count = |names: &[String]| {
        let mut n: BTreeMap<String, usize> = BTreeMap::new();
        for s in names {
            *n.entry(s.clone()).or_default() += 1;
        }
        n
    };
    let stems: Vec<String> = rows.iter().map(stem).collect();
    let n = count(&stems);
    let names: Vec<String> = rows.iter().zip(&stems).map(|(r, s)| if n[s] > 1 { rel(r) } else { s.clone() }).collect();
    let n = count(&names);
    names.into_iter().enumerate().map(|(i, s)| if n[&s] > 1 { format!("{s}_{i}") } else { s }).collect()
}

/// `crate::write_file_atomically`, with the path in the error.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::write_file_atomically(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Pictures, maps and the CSV (last: its presence means the rest is complete). Returns
/// (rows labelled anomalous, rows without a threshold).
fn write_outputs(
    out: &Path,
    rows: &[Row],
    refs: &BTreeMap<String, ClassRef>,
    progress: &Progress,
) -> Result<(usize, usize)> {
    let png_dir = out.join("png");
    std::fs::create_dir_all(&png_dir).with_context(|| format!("creating {}", png_dir.display()))?;
    let size = rows[0].map.size()[0];
    let maps = Tensor::stack(&rows.iter().map(|r| r.map.shallow_clone()).collect::<Vec<_>>(), 0).to_kind(Kind::Float);
    let scores = Tensor::from_slice(&rows.iter().map(|r| r.score).collect::<Vec<_>>());

    // Colour scale per class: the run's stored maps, else this call's maps of the class
    // (rows without a class share one scale too).
    let mut vmax: BTreeMap<Option<String>, f64> = BTreeMap::new();
    for r in rows {
        let m = r.map.max().double_value(&[]);
        let v = vmax.entry(r.input.class.clone()).or_insert(f64::MIN);
        *v = v.max(m);
    }
    for (class, v) in vmax.iter_mut() {
        if let Some(stored) = class.as_ref().and_then(|c| refs.get(c)).and_then(|r| r.vmax) {
            *v = stored;
        }
    }

    let names = picture_names(rows);
    let bar = progress.bar(rows.len() as u64, "pictures");
    let mut csv_rows = vec![];
    let (mut anomalous, mut unlabelled) = (0, 0);
    for (r, name) in rows.iter().zip(&names) {
        let threshold = r.input.class.as_ref().and_then(|c| refs.get(c)).and_then(|c| c.threshold);
        let verdict = threshold.map(|t| f64::from(r.score) >= t);
        match verdict {
            Some(true) => anomalous += 1,
            Some(false) => {}
            None => unlabelled += 1,
        }
        let scale = pictures::Scale { vmax: vmax[&r.input.class], threshold };
        let caption = crate::eval::legend::verdict_caption(r.score, threshold);
        let png = pictures::prediction_png(&r.input.path, size as u32, &r.map, &scale, r.score.into(), &[caption])?;
        write_atomic(&png_dir.join(format!("{name}.png")), &png)?;
        csv_rows.push([
            r.input.path.display().to_string(),
            r.input.class.clone().unwrap_or_default(),
            r.score.to_string(),
            threshold.map(|t| t.to_string()).unwrap_or_default(),
            verdict.map(|v| v.to_string()).unwrap_or_default(),
        ]);
        bar.inc(1);
    }
    bar.finish_and_clear();

    write_atomic(&out.join("maps.safetensors"), &tensors::encode(&[("maps", &maps), ("scores", &scores)])?)?;
    let mut w = csv::Writer::from_writer(vec![]);
    w.write_record(["path", "class", "score", "threshold", "anomalous"])?;
    for row in &csv_rows {
        w.write_record(row)?;
    }
    write_atomic(&out.join("predictions.csv"), &w.into_inner().context("CSV to memory")?)?;
    Ok((anomalous, unlabelled))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: &str, rel: &str) -> Row {
        Row {
            input: Input { path: path.into(), rel: rel.into(), class: None },
            score: 0.0,
            map: Tensor::zeros([1, 1], (Kind::Float, Device::Cpu)),
        }
    }

    #[test]
    fn picture_names_are_stems_unless_they_repeat() {
        let rows = [
            row("d/test/good/000.png", "good/000.png"),
            row("d/test/crack/000.png", "crack/000.png"),
            row("d/test/crack/001.png", "crack/001.png"),
            row("e/good/000.png", "good/000.png"),
            row("../x/up.png", "../x/up.png"),
        ];
        assert_eq!(picture_names(&rows), ["good_000_0", "crack_000", "001", "good_000_3", "up"]);
    }

    #[test]
    fn the_class_is_the_last_class_folder_in_the_path() {
        let classes = ["grain".to_string(), "weave".to_string()];
        assert_eq!(class_in_path(Path::new("data/grain/test/weave/000.png"), &classes).as_deref(), Some("weave"));
        assert_eq!(class_in_path(Path::new("data/grain/test/good/000.png"), &classes).as_deref(), Some("grain"));
        // The file name itself is not a folder of the class.
        assert_eq!(class_in_path(Path::new("/nowhere/grain"), &classes), None);
    }

    #[test]
    fn folders_are_searched_recursively_and_sorted() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b/2.PNG", "b/1.jpg", "a.bmp", "c/d/e.tif", "notes.txt"] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let missing = dir.path().join("missing.png");
        let (found, skipped) = collect_inputs(&[dir.path().to_path_buf(), missing.clone()]).unwrap();
        let rel: Vec<String> = found.iter().map(|i| i.rel.display().to_string()).collect();
        assert_eq!(rel, ["a.bmp", "b/1.jpg", "b/2.PNG", "c/d/e.tif"]);
        assert_eq!(skipped, [Skipped { path: missing, reason: "no such file or folder".into() }]);
    }
}
