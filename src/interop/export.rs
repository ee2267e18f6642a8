//! `ras export RUN --format public|safetensors`: a run's model (no optimizer state) for
//! people who use the PyTorch code.
//!
//! Both formats hold the same names, the public code's state dict of its whole model: the
//! reconstruction model under `module.reconstruction.` and the backbone the run used under
//! `module.backbone.` (efficientnet_pytorch's names, with BatchNorm's `num_batches_tracked`
//! counters added as 0, as `load_state_dict(strict=True)` wants every buffer).
//! - `public`: `torch.save({"epoch", "arch", "state_dict", "best_metric"})` like the public
//!   `ckpt_best.pth.tar` (written natively, see [`super::pth`]), for its `--load_path`/
//!   `load_state` and `torch.load(weights_only=True)`.
//! - `safetensors`: the state dict alone, with the run id, epoch and decoder in the file's
//!   metadata.
//!
//! The weights are the run's latest valid checkpoint of the model (normally the final
//! one; the epoch is reported so that a partial run is never mistaken for a finished one).

use super::pth::{self, Value};
use super::{PUBLIC_BACKBONE_PREFIX, PUBLIC_MODEL_PREFIX};
use crate::backbone::FeatureExtractor;
use crate::config::Setting;
use crate::run::{Checkpointer, RunPaths};
use crate::store::{tensors, Store};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// A `.pth.tar` in the public code's checkpoint layout.
    Public,
    Safetensors,
}

impl ExportFormat {
    /// The file name ending `ras export` gives by default.
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Public => "pth.tar",
            ExportFormat::Safetensors => "safetensors",
        }
    }
}

pub struct ExportOptions {
    pub format: ExportFormat,
    /// Which model of a separate-setting run (a class name); unified runs have one.
    pub model: Option<String>,
    /// Include the backbone's weights (needs the run's `backbone.weights` file, if it had one).
    pub backbone: bool,
}

pub struct Exported {
    pub bytes: Vec<u8>,
    pub model: String,
    /// Completed epochs of the checkpoint exported, and the run's `train.epochs`.
    pub epoch: usize,
    pub epochs: usize,
    pub model_tensors: usize,
    /// Backbone tensors written, its BatchNorm `num_batches_tracked` counters included.
    pub backbone_tensors: usize,
    /// Of those, the counters.
    pub backbone_counters: usize,
    /// The backbone exported is a seeded random init (the run had no `backbone.weights`).
    pub backbone_random_init: bool,
}

impl Exported {
    /// What `ras export` prints once the bytes are written to `out`.
    pub fn render(&self, out: &Path) -> String {
        let counters = match self.backbone_counters {
            0 => String::new(),
            n => format!(" ({} weights and statistics, {n} BatchNorm counters)", self.backbone_tensors - n),
        };
        let mut s = format!(
            "wrote {} ({} bytes): model {} at epoch {} of {}, {} model + {} backbone tensors{counters}\n",
            out.display(),
            self.bytes.len(),
            self.model,
            self.epoch,
            self.epochs,
            self.model_tensors,
            self.backbone_tensors
        );
        if self.epoch < self.epochs {
            s += &format!("NOTE: the run is not finished: this is its epoch-{} checkpoint\n", self.epoch);
        }
        if self.backbone_random_init {
            s += "NOTE: the backbone is a seeded random init (the run had no backbone.weights)\n";
        }
        s
    }
}

/// Fails when no file can be written at `out` (its folder missing or read-only, or `out`
/// a folder), before any work is done: `ras export` checks its output first. Probes with
/// the temporary name [`crate::write_file_atomically`] writes, and removes it.
pub fn check_writable(out: &Path) -> std::io::Result<()> {
    if out.is_dir() {
        return Err(std::io::Error::other("it is a folder: give a file name"));
    }
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let probe = out.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

/// The export of `run`'s model (see the module doc).
pub fn export_run(store: &Store, run: &str, opts: &ExportOptions) -> Result<Exported> {
    let paths = RunPaths::new(run);
    let cfg = crate::run::stored_config(store, &paths)?
        .with_context(|| format!("no run {run} in {} (no {})", store.url(), paths.config()))?;
    let model = match (cfg.train.setting, &opts.model) {
        (Setting::Unified, None) => "unified".to_string(),
        (Setting::Unified, Some(m)) if m == "unified" => m.clone(),
        (Setting::Unified, Some(m)) => bail!("run {run} has one model (unified setting): drop --model {m}"),
        (Setting::Separate, Some(m)) => m.clone(),
        (Setting::Separate, None) => {
            let classes = if cfg.dataset.classes.is_empty() {
                "one per class".to_string()
            } else {
                cfg.dataset.classes.join(", ")
            };
            bail!("run {run} trained one model per class (separate setting): choose one with --model CLASS ({classes})")
        }
    };
    let (rec, bytes) = Checkpointer::new(store, &paths).latest(&model)?;
    let mut state: Vec<(String, Tensor)> = vec![];
    for (name, t) in crate::model::legacy::upgrade_all(tensors::decode(&bytes)?) {
        if let Some(n) = name.strip_prefix("model.") {
            state.push((format!("{PUBLIC_MODEL_PREFIX}{n}"), t));
        }
    }
    if state.is_empty() {
        bail!("checkpoint {} holds no model tensors", rec.weights);
    }
    state.sort_by(|a, b| a.0.cmp(&b.0));
    let model_tensors = state.len();

    let mut backbone = vec![];
    let mut random_init = false;
    if opts.backbone {
        // Only its weights are read: no word about a random init on the way (the summary
        // says what was exported).
        let fx = FeatureExtractor::quiet(&cfg.backbone, Device::Cpu).with_context(|| {
            format!("loading the backbone run {run} used (its config's [backbone]); pass --no-backbone to export the model alone")
        })?;
        if let Some(env) = store.get_json::<serde_json::Value>(&paths.env())? {
            if let Some(used) = env["backbone"]["weights"].as_str() {
                if used != fx.identity.weights {
                    bail!(
                        "the backbone weights {} differ from the ones run {run} used (sha256 {used}, now {}): \
                         restore that file or pass --no-backbone",
                        cfg.backbone.weights.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                        fx.identity.weights
                    );
                }
            }
        }
        random_init = !fx.identity.pretrained;
        for (n, t) in fx.named_weights() {
            if let Some(bn) = n.strip_suffix(".running_var") {
                backbone.push((
                    format!("{PUBLIC_BACKBONE_PREFIX}{bn}.num_batches_tracked"),
                    Tensor::zeros([], (Kind::Int64, Device::Cpu)),
                ));
            }
            backbone.push((format!("{PUBLIC_BACKBONE_PREFIX}{n}"), t));
        }
        backbone.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let backbone_tensors = backbone.len();
    let backbone_counters = backbone.iter().filter(|(n, _)| n.ends_with(".num_batches_tracked")).count();
    // The public ModelHelper's order: backbone, (neck: no tensors), reconstruction.
    let all: Vec<(String, Tensor)> = backbone.into_iter().chain(state).collect();
    for (n, t) in &all {
        if !matches!(t.kind(), Kind::Float | Kind::Int64) {
            bail!("{n}: unexpected kind {:?}", t.kind());
        }
    }
    let arch = serde_json::to_value(cfg.model.decoder)?.as_str().unwrap_or("ras").to_string();
    let bytes = match opts.format {
        ExportFormat::Public => {
            let mut entries = vec![
                ("epoch", Value::Int(rec.epoch as i64)),
                ("arch", Value::Str(arch)),
                ("state_dict", Value::StateDict(all)),
            ];
            if let Some(score) = rec.score {
                entries.push(("best_metric", Value::Float(score)));
            }
            pth::save(&entries)?
        }
        ExportFormat::Safetensors => {
            let meta: HashMap<String, String> = [
                ("format", "ras-export".to_string()),
                ("run", run.to_string()),
                ("model", model.clone()),
                ("epoch", rec.epoch.to_string()),
                ("decoder", arch),
                ("backbone", if opts.backbone { cfg.backbone.arch.to_string() } else { "not included".into() }),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            let list: Vec<(&String, &Tensor)> = all.iter().map(|(n, t)| (n, t)).collect();
            tensors::encode_with_metadata(&list, Some(meta))?
        }
    };
    Ok(Exported {
        bytes,
        model,
        epoch: rec.epoch,
        epochs: cfg.train.epochs,
        model_tensors,
        backbone_tensors,
        backbone_counters,
        backbone_random_init: random_init,
    })
}
