//! `ras import CKPT --config CONFIG`: a checkpoint of the public code becomes a run in the
//! store, which `ras eval RUN` then evaluates like any run (features, predictions, metrics,
//! `final_metrics.json`).
//!
//! The run is the config with its name suffixed `-import-<first 8 hex of the file's
//! sha256>`, so it never shares an id (and a store prefix) with a run trained from the same
//! config, and importing the same file again finds the run already there. What it holds:
//! `config.toml`, `import.json` (provenance: the source file, its sha256, what was not
//! imported, what was compared of the backbone) and one checkpoint at the config's last
//! epoch (`train.epochs`) whose AdamW moments are zero and step count 0 (the public code's
//! optimizer state is not imported: it only matters for resuming training, and an
//! imported run is for evaluation).
//!
//! The run's backbone is the config's `[backbone]`. When the checkpoint holds its own
//! (`module.backbone.*`) the two must be equal, tensor by tensor, or nothing is imported
//! ([`super::backbone_check`]).
//!
//! Reading: a safetensors file natively; a `torch.save` pickle (`.pth`, `.pth.tar`)
//! through tools/convert_weights.py, which is compiled into this binary and run with a
//! Python that has torch (`--python`, else `$RAS_PYTHON`, else `.venv-ref/bin/python`
//! when present, else `python3`). Pickles are read with `weights_only=True`.

use super::backbone_check::{backbone_name, check_backbone, BackboneCheck};
use super::{classify, PublicName};
use crate::backbone::BackboneIdentity;
use crate::config::{RunConfig, Setting};
use crate::run::{load_trained, Checkpointer, RunPaths, TrainedWeights};
use crate::store::{safetensors_header, sha256_hex, tensors, Store};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// The converter, carried inside the binary so that `ras import` works outside a checkout.
const CONVERTER: &str = include_str!("../../tools/convert_weights.py");

#[derive(Debug, Default, Clone)]
pub struct ImportOptions {
    /// The Python (with torch and safetensors) that reads pickled checkpoints.
    pub python: Option<PathBuf>,
}

/// What `import.json` records about where an imported run's weights came from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Provenance {
    /// The file as given, made absolute.
    pub source: String,
    pub sha256: String,
    pub bytes: u64,
    /// "safetensors" or "torch.save" (read through tools/convert_weights.py).
    pub format: String,
    /// Model tensors imported.
    pub tensors: usize,
    /// Source names that are not part of the reconstruction model (the backbone's, which
    /// ras takes from `backbone.weights`, and BatchNorm counters), for the record.
    pub not_imported: Vec<String>,
    /// The backbone: the config's, and what of the checkpoint's was compared with it.
    /// None in records written before the comparison.
    #[serde(default)]
    pub backbone: Option<BackboneCheck>,
    /// The config file the run's config was made from.
    pub config: String,
    pub imported_unix: u64,
    pub ras_version: String,
}

/// What `import_checkpoint` made (or found).
pub struct Imported {
    pub run_id: String,
    pub config: RunConfig,
    pub provenance: Provenance,
    /// The same file was imported into this store before: nothing was written.
    pub already_present: bool,
}

impl Imported {
    /// What `ras import` prints: what was imported from `checkpoint` (or that it was
    /// already), the backbone, the run, and how to evaluate it.
    pub fn render(&self, checkpoint: &Path, store_url: &str) -> String {
        let (p, id) = (&self.provenance, &self.run_id);
        let mut s = String::new();
        if self.already_present {
            s += &format!("already imported (sha256 {}): run {id}\n", p.sha256);
        } else {
            let count = NotImported::of(&p.not_imported);
            s += &format!(
                "imported {} ({}, sha256 {}): {} model tensors of the {} it holds\n",
                checkpoint.display(),
                p.format,
                p.sha256,
                p.tensors,
                p.tensors + p.not_imported.len()
            );
            if !p.not_imported.is_empty() {
                s += &format!("not imported: {}\n", count.render());
            }
            match &p.backbone {
                Some(b) if b.compared_tensors > 0 => {
                    let counters = match count.backbone_counters {
                        0 => String::new(),
                        n => format!(" (and {n} BatchNorm counters, never read, not compared)"),
                    };
                    s += &format!(
                        "backbone: the config's ({}), equal to the checkpoint's in all {} backbone tensors it \
                         holds{counters}\n",
                        b.weights, b.compared_tensors
                    )
                }
                Some(b) => {
                    s += &format!(
                        "backbone: the checkpoint holds none; the run uses the config's ({}), not compared\n",
                        b.weights
                    )
                }
                None => {}
            }
            s += &format!("run {id} in {store_url}/{}\n", RunPaths::new(id.as_str()).prefix());
        }
        s + &format!("evaluate it: ras eval {id} --store {store_url}\n")
    }
}

/// The tensors of a checkpoint that an import leaves out, counted by kind.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NotImported {
    /// The backbone's weights and BatchNorm statistics (`module.backbone.*`).
    pub backbone: usize,
    /// BatchNorm `num_batches_tracked` counters of the backbone.
    pub backbone_counters: usize,
    /// Counters elsewhere (a neck's, a model's).
    pub other_counters: usize,
    /// Anything else (a neck's tensors).
    pub other: usize,
}

impl NotImported {
    /// Counts `names` (a public state dict's names) by kind.
    pub fn of(names: &[String]) -> Self {
        let mut c = Self::default();
        for n in names {
            let in_backbone = super::without_module(n).starts_with("backbone.");
            match (in_backbone, n.ends_with("num_batches_tracked")) {
                (true, true) => c.backbone_counters += 1,
                (true, false) => c.backbone += 1,
                (false, true) => c.other_counters += 1,
                (false, false) => c.other += 1,
            }
        }
        c
    }

    pub fn total(&self) -> usize {
        self.backbone + self.backbone_counters + self.other_counters + self.other
    }

    /// "360 tensors outside the reconstruction model: 311 of the backbone, 49 BatchNorm
    /// counters (num_batches_tracked)": the parts add up to the total.
    pub fn render(&self) -> String {
        let mut parts = vec![];
        if self.backbone > 0 {
            parts.push(format!("{} of the backbone", self.backbone));
        }
        let counters = self.backbone_counters + self.other_counters;
        if counters > 0 {
            parts.push(format!("{counters} BatchNorm counters (num_batches_tracked)"));
        }
        if self.other > 0 {
            parts.push(format!("{} others (the neck's)", self.other));
        }
        format!("{} tensors outside the reconstruction model: {}", self.total(), parts.join(", "))
    }
}

/// The run an import of a file with this sha256 makes from `cfg` (into `store`).
pub fn imported_config(cfg: &RunConfig, store: &Store, sha256: &str) -> RunConfig {
    let mut cfg = cfg.clone();
    cfg.name = format!("{}-import-{}", cfg.name, &sha256[..8]);
    cfg.store = store.url().to_string();
    cfg
}

/// Imports the public checkpoint `src` as a run of `cfg` (see the module doc).
pub fn import_checkpoint(
    store: &Store,
    cfg: &RunConfig,
    config_path: &Path,
    src: &Path,
    opts: &ImportOptions,
) -> Result<Imported> {
    if cfg.train.setting != Setting::Unified {
        bail!(
            "{}: train.setting = \"separate\" trains one model per class, and a checkpoint holds one model: \
             import it with a unified config (train.setting = \"unified\", as the public code trains)",
            config_path.display()
        );
    }
    let bytes = std::fs::read(src).with_context(|| format!("cannot read checkpoint {}", src.display()))?;
    let sha256 = sha256_hex(&bytes);
    let cfg = imported_config(cfg, store, &sha256);
    let paths = RunPaths::of(&cfg);
    let model = cfg.train.setting.model_name("").to_string();
    let checkpoints = Checkpointer::new(store, &paths);
    if let Some(prev) = store.get_json::<Provenance>(&paths.import_record())? {
        if prev.sha256 == sha256 && checkpoints.latest_valid(&model)?.is_some_and(|(r, _)| r.epoch == cfg.train.epochs)
        {
            return Ok(Imported {
                run_id: paths.id().to_string(),
                config: cfg,
                provenance: prev,
                already_present: true,
            });
        }
    }

    // A file named or shaped as safetensors is read here, and refused with what is wrong
    // with it: never handed to the converter of pickles.
    let pickle = !safetensors_header::looks_like(src, &bytes);
    let (named, held_backbone, mut not_imported) = if pickle {
        convert_pickle(src, opts)?
    } else {
        safetensors_header::check(&bytes)
            .with_context(|| format!("{} is not a whole safetensors file", src.display()))?;
        model_tensors(
            tensors::decode(&bytes).with_context(|| format!("{}: not a valid safetensors file", src.display()))?,
        )
    };
    let format = if pickle { "torch.save" } else { "safetensors" };
    not_imported.sort();
    let named: BTreeMap<String, Tensor> = crate::model::legacy::upgrade_all(named).into_iter().collect();
    if named.is_empty() {
        bail!("{}: holds no tensor of a reconstruction model (names under module.reconstruction.)", src.display());
    }

    let identity =
        BackboneIdentity::resolve(&cfg.backbone).with_context(|| format!("{}: [backbone]", config_path.display()))?;
    if let Some(w) = named.get("input_proj.weight") {
        let found = w.size()[1];
        if found != identity.channels {
            bail!(
                "{}: the checkpoint's model reads {found} feature channels, the config's backbone gives {} \
                 (backbone.arch = {}, backbone.outblocks = {:?}): use the backbone the checkpoint was trained with",
                src.display(),
                identity.channels,
                cfg.backbone.arch,
                identity.outblocks
            );
        }
    }
    let model_tensors_count = named.len();
    let trained = load_trained(
        &cfg,
        identity.channels,
        identity.grid,
        Device::Cpu,
        TrainedWeights::Model(named.into_iter().collect()),
    )
    .map_err(|diffs| {
        anyhow::anyhow!(
            "{} does not fit the model of {} (check model.decoder, model.encoder_layers, model.decoder_layers, \
                 model.hidden_dim, model.ffn_dim and backbone.image_size):\n  {}",
            src.display(),
            config_path.display(),
            diffs.0.join("\n  ")
        )
    })?;
    let backbone = check_backbone(&cfg.backbone, config_path, src, pickle, held_backbone)?;

    let provenance = Provenance {
        source: std::path::absolute(src).unwrap_or_else(|_| src.to_path_buf()).display().to_string(),
        sha256,
        bytes: bytes.len() as u64,
        format: format.to_string(),
        tensors: model_tensors_count,
        not_imported,
        backbone: Some(backbone),
        config: config_path.display().to_string(),
        imported_unix: crate::unix_now(),
        ras_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    // Config and provenance first, the checkpoint (weights, then its record) last: a run
    // cut short here has no valid checkpoint, and importing again completes it.
    store.put(&paths.config(), cfg.to_toml())?;
    store.put_json(&paths.import_record(), &provenance)?;
    checkpoints.save_state(&model, cfg.train.epochs, 0, None, &crate::train::initial_state(&trained.vs))?;
    Ok(Imported { run_id: paths.id().to_string(), config: cfg, provenance, already_present: false })
}

/// A public state dict's tensors, sorted out: the reconstruction model's (by their names
/// in the model), the backbone's (by efficientnet_pytorch's names), and the names of
/// everything not imported into the model (the backbone's among them).
type Parts = (Vec<(String, Tensor)>, Vec<(String, Tensor)>, Vec<String>);

/// Sorts a public state dict read natively (safetensors) into its [`Parts`].
fn model_tensors(all: Vec<(String, Tensor)>) -> Parts {
    let (mut model, mut backbone, mut skipped) = (vec![], vec![], vec![]);
    for (name, t) in all {
        match classify(&name) {
            PublicName::Model(n) if !n.ends_with("num_batches_tracked") => model.push((n.to_string(), t)),
            _ => {
                if let Some(n) = backbone_name(&name) {
                    backbone.push((n.to_string(), t));
                }
                skipped.push(name)
            }
        }
    }
    (model, backbone, skipped)
}

/// Where a pickled checkpoint is read: `--python`, `$RAS_PYTHON`, `.venv-ref/bin/python`
/// (`make setup-python`) when present, else `python3`.
fn python(opts: &ImportOptions) -> PathBuf {
    if let Some(p) = &opts.python {
        return p.clone();
    }
    if let Some(p) = std::env::var_os("RAS_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(".venv-ref/bin/python");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

/// Runs the converter on a pickled checkpoint; the model tensors, the backbone tensors
/// (none when it holds no backbone) and the source names it did not import.
fn convert_pickle(src: &Path, opts: &ImportOptions) -> Result<Parts> {
    let dir = tempfile::tempdir().context("creating a temporary folder")?;
    let script = dir.path().join("convert_weights.py");
    let out = dir.path().join("model.safetensors");
    let backbone_out = dir.path().join("backbone.safetensors");
    std::fs::write(&script, CONVERTER)?;
    let py = python(opts);
    let run = std::process::Command::new(&py)
        .arg(&script)
        .arg(src)
        .arg(&out)
        .args(["--part", "model", "--strict", "--backbone-out"])
        .arg(&backbone_out)
        .output()
        .with_context(|| {
            format!(
                "cannot start {} to read the pickled checkpoint {}: pass --python PATH (a Python with torch and \
                 safetensors; `make setup-python` makes .venv-ref/bin/python), or convert it yourself with \
                 tools/convert_weights.py and import the .safetensors",
                py.display(),
                src.display()
            )
        })?;
    let stderr = String::from_utf8_lossy(&run.stderr);
    if !run.status.success() {
        let hint = if stderr.contains("No module named") {
            format!("\n{} lacks torch or safetensors: pass --python PATH to one that has them (`make setup-python` makes .venv-ref)", py.display())
        } else {
            String::new()
        };
        bail!("reading {} with {} failed:\n{}{hint}", src.display(), py.display(), stderr.trim_end());
    }
    let skipped = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("not imported: "))
        .map(|s| s.split(' ').next().unwrap_or(s).to_string())
        .collect();
    let bytes = std::fs::read(&out).with_context(|| format!("the converter wrote no {}", out.display()))?;
    let backbone = match std::fs::read(&backbone_out) {
        Ok(b) => tensors::decode(&b)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(e).with_context(|| format!("reading {}", backbone_out.display())),
    };
    Ok((tensors::decode(&bytes)?, backbone, skipped))
}

#[cfg(test)]
mod tests {
    use super::NotImported;

    #[test]
    fn what_is_not_imported_is_counted_by_kind_and_adds_up() {
        let names: Vec<String> = [
            "module.backbone._conv_stem.weight",
            "module.backbone._bn0.running_var",
            "module.backbone._bn0.num_batches_tracked",
            "backbone._blocks.0._bn1.num_batches_tracked",
            "module.neck.x.num_batches_tracked",
            "module.neck.proj.weight",
        ]
        .map(String::from)
        .to_vec();
        let c = NotImported::of(&names);
        assert_eq!(c, NotImported { backbone: 2, backbone_counters: 2, other_counters: 1, other: 1 });
        assert_eq!(c.total(), names.len());
        assert_eq!(
            c.render(),
            "6 tensors outside the reconstruction model: 2 of the backbone, 3 BatchNorm counters \
             (num_batches_tracked), 1 others (the neck's)"
        );
    }
}
