//! Where a run keeps things in the store. This is the one place that describes the layout,
//! and [`RunPaths`] is the one place that spells its keys: everything a run (and the
//! launchers, the sweep coordinator, `ras eval`) reads or writes lives under
//! `runs/<run id>/`:
//!
//! ```text
//! config.toml            resolved config (what produced everything below)
//! env.json               versions, git commit, device, backbone identity, cache counts
//! import.json            where an imported run's weights came from (`ras import`): source
//!                        file, its sha256, what was not imported
//! lease.json             who is training the run now (host, pid, job) and until when: one
//!                        writer per run (`lease`); absent when nobody is
//! leases/<acquired unix ms>-<token>.json  the lease's history, append-only: every holder,
//!                        and whose lease it replaced (a dead holder's) if any;
//!                        `...<token>.released.json` once that holder released it
//! lease-takeovers/<old token>.<n>  a takeover of a dead holder's lease in progress
//!                        (who wins it); deleted once it is done
//! status.json            running | complete | failed | preempted | infra | paused
//!                        (+ error, epoch)
//! train_log.jsonl        one line per epoch and model: loss, lr
//! metrics.jsonl          one line per evaluation: per-class and mean metrics
//! final_metrics.json     last-epoch metrics (+ best-on-test as a labelled extra)
//! pixel_histograms.safetensors  per class and test image, its normal and anomalous
//!                        pixels per bin of a score grid (a P-AUROC verdict's bootstrap)
//! predictions/<class>.safetensors + .json   image scores, 224x224 maps, keys, labels
//! pictures/<class>/<sample key without its extension, '/' -> '_'>.png
//!                        image | ground truth | anomaly map panels (eval.pictures)
//! evals/test_jitter_<s>.json  final model at test-time noise s (eval.noise_scales, ras eval)
//! evals/test_jitter_<s>.pixels.safetensors  its pixel histograms (as pixel_histograms)
//! checkpoints/<model>/epoch_NNNN[_step_SSSSS].{safetensors,json}
//!                        weights + AdamW state, then the record (epoch, step, sha256);
//!                        <model> is "unified" or the class name (separate setting)
//! logs/<job id>.log      the log of every ended job of the run (kept by the sweep
//!                        coordinator, so it outlives the scratch folder)
//! jobs/<job id>.json     the record of every job of the run (launcher, id, host, log
//!                        path, nodes), written by the coordinator that submitted it
//! jobs/<job id>.sbatch|.sh  what that job ran: its Slurm batch script, or the command
//!                        line of a local job
//! holdout.json           a search run's held-out training images (share, seed, keys)
//! rungs/<epoch>.json     a search run's selection metric at a rung (`run::search`)
//! cost.json              every attempt's cost record in one object, so that a reader
//!                        needs one GET, not a LIST and a GET per record (`CostIndex`)
//! attempts/<started unix>-<host>-<pid>.json  what one attempt cost: phases, device,
//!                        ranks, rank-hours (written by rank 0 when the attempt ends)
//! ```
//! `status.json` says "complete" only after everything else is written.
//!
//! Why one type: the keys are read by other processes (launchers, the coordinator,
//! reports) and by later versions of `ras`, so they are a file format. Spelling them in
//! one place keeps writers and readers from drifting apart: code that lists keys reads
//! them back with [`RunPaths::parse`], never by hand. The unit tests below pin every key
//! to its literal string and parse the listed kinds back.

use crate::config::RunConfig;

/// The store keys of one run (see the module doc for the layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPaths {
    id: String,
}

/// What a key under `runs/<id>/` is, as [`RunPaths::parse`] reads it: the kinds that
/// code listing a store looks for; any other key of a run is [`RunKey::Other`].
#[derive(Debug, Clone, PartialEq)]
pub enum RunKey {
    Config,
    Env,
    ImportRecord,
    Lease,
    /// `leases/<acquired unix ms>-<token>.json`: one holder of the lease (`lease::LeaseEvent`).
    LeaseEvent {
        acquired_ms: u64,
        token: String,
    },
    /// `leases/<acquired unix ms>-<token>.released.json`: that holder released it.
    LeaseReleased {
        acquired_ms: u64,
        token: String,
    },
    Status,
    TrainLog,
    MetricsLog,
    FinalMetrics,
    /// `pixel_histograms.safetensors` (`eval::pixel_hist`).
    PixelHistograms,
    /// `cost.json`: every attempt record of the run in one object.
    CostIndex,
    /// `attempts/<started unix>-<host>-<pid>.json`: one attempt's cost record.
    Attempt {
        started_unix: u64,
        host: String,
        pid: u32,
    },
    /// `evals/test_jitter_<scale>.json`: the final model at test-time noise `scale`.
    EvalNoise {
        scale: f64,
    },
    /// `evals/test_jitter_<scale>.<checkpoint>.<n>.json`: another evaluation at `scale`.
    EvalNoiseOther {
        scale: f64,
        checkpoint: String,
        n: usize,
    },
    /// `rungs/<epoch>.json`: a search run's selection metric at a rung.
    Rung {
        epoch: usize,
    },
    /// `evals/test_jitter_<scale>.pixels.safetensors`: the final model's pixel histograms
    /// at test-time noise `scale`.
    EvalNoisePixels {
        scale: f64,
    },
    /// Any other key of the run (checkpoints, predictions, pictures, logs, Slurm
    /// records): what follows `runs/<id>/`.
    Other(String),
}

/// `<started unix>-<host>-<pid>` (a host name may contain '-': the first and the last
/// one delimit it).
fn attempt_name(name: &str) -> Option<RunKey> {
    let (started, rest) = name.split_once('-')?;
    let (host, pid) = rest.rsplit_once('-')?;
    Some(RunKey::Attempt { started_unix: started.parse().ok()?, host: host.to_string(), pid: pid.parse().ok()? })
}

/// `<acquired unix ms>-<token>` or the same + `.released` (without `.json`).
fn lease_name(name: &str) -> Option<RunKey> {
    let (name, released) = match name.strip_suffix(".released") {
        Some(n) => (n, true),
        None => (name, false),
    };
    let (acquired, token) = name.split_once('-')?;
    let (acquired_ms, token) = (acquired.parse().ok()?, token.to_string());
    if token.is_empty() || token.contains('/') {
        return None;
    }
    Some(if released {
        RunKey::LeaseReleased { acquired_ms, token }
    } else {
        RunKey::LeaseEvent { acquired_ms, token }
    })
}

/// A scale as `eval_noise` writes it (f64 `Display`); only finite ones are scales.
fn scale(text: &str) -> Option<f64> {
    text.parse().ok().filter(|s: &f64| s.is_finite())
}

/// `test_jitter_<scale>` or `test_jitter_<scale>.<checkpoint>.<n>` (without `.json`).
fn eval_name(name: &str) -> Option<RunKey> {
    let rest = name.strip_prefix("test_jitter_")?;
    if let Some(scale) = scale(rest) {
        return Some(RunKey::EvalNoise { scale });
    }
    let (rest, n) = rest.rsplit_once('.')?;
    let (s, checkpoint) = rest.rsplit_once('.')?;
    // Checkpoint names (final, best, epoch_<E>) start with a letter: "12.5.1" is no
    // evaluation of checkpoint "5".
    if !checkpoint.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    Some(RunKey::EvalNoiseOther { scale: scale(s)?, checkpoint: checkpoint.to_string(), n: n.parse().ok()? })
}

impl RunPaths {
    /// Folder of every run: `runs/` (a LIST of it finds the runs of a store).
    pub const ROOT: &'static str = "runs/";

    /// What a listed key is: its run and its kind; None for a key outside a run's folder.
    /// A name under `attempts/` or `evals/` that does not read as its kind (not written
    /// by `ras`) is `Other`, not a record.
    pub fn parse(key: &str) -> Option<(RunPaths, RunKey)> {
        let (id, rest) = key.strip_prefix(Self::ROOT)?.split_once('/')?;
        if id.is_empty() || rest.is_empty() {
            return None;
        }
        let kind = match rest {
            "config.toml" => RunKey::Config,
            "env.json" => RunKey::Env,
            "import.json" => RunKey::ImportRecord,
            "lease.json" => RunKey::Lease,
            "status.json" => RunKey::Status,
            "train_log.jsonl" => RunKey::TrainLog,
            "metrics.jsonl" => RunKey::MetricsLog,
            "final_metrics.json" => RunKey::FinalMetrics,
            "pixel_histograms.safetensors" => RunKey::PixelHistograms,
            "cost.json" => RunKey::CostIndex,
            _ => {
                let named = |folder: &str| rest.strip_prefix(folder)?.strip_suffix(".json");
                let pixels = || {
                    let name = rest.strip_prefix("evals/test_jitter_")?.strip_suffix(".pixels.safetensors")?;
                    Some(RunKey::EvalNoisePixels { scale: scale(name)? })
                };
                let rung = || Some(RunKey::Rung { epoch: named("rungs/")?.parse().ok()? });
                named("attempts/")
                    .and_then(attempt_name)
                    .or_else(|| named("leases/").and_then(lease_name))
                    .or_else(rung)
                    .or_else(|| named("evals/").and_then(eval_name))
                    .or_else(pixels)
                    .unwrap_or_else(|| RunKey::Other(rest.to_string()))
            }
        };
        Some((RunPaths::new(id), kind))
    }

    /// The keys of the run with this id (as `run_id` makes it).
    pub fn new(id: impl Into<String>) -> Self {
        Self { id: id.into() }
    }

    /// The keys of the run this config defines.
    pub fn of(cfg: &RunConfig) -> Self {
        Self::new(super::run_id(cfg))
    }

    /// The run whose `prefix()` this is (`runs/<id>`, a trailing '/' allowed).
    pub fn from_prefix(prefix: &str) -> Option<Self> {
        let id = prefix.strip_prefix(Self::ROOT)?.trim_end_matches('/');
        (!id.is_empty() && !id.contains('/')).then(|| Self::new(id))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// `runs/<id>`: every key of the run starts with it.
    pub fn prefix(&self) -> String {
        format!("runs/{}", self.id)
    }

    fn key(&self, rest: &str) -> String {
        format!("runs/{}/{rest}", self.id)
    }

    pub fn config(&self) -> String {
        self.key("config.toml")
    }

    pub fn env(&self) -> String {
        self.key("env.json")
    }

    /// Provenance of a run made by `ras import` from a checkpoint of the public code.
    pub fn import_record(&self) -> String {
        self.key("import.json")
    }

    /// The run's lease (`run::lease`): who may write the run now.
    pub fn lease(&self) -> String {
        self.key("lease.json")
    }

    /// The lease's history (`leases/`): one record per holder, never overwritten.
    pub fn leases(&self) -> String {
        self.key("leases")
    }

    /// Markers of takeovers of the lease in progress (`lease-takeovers/<old token>.<n>`):
    /// of the processes replacing a dead holder, the one that creates a marker wins.
    pub fn lease_takeovers(&self) -> String {
        self.key("lease-takeovers")
    }

    pub fn lease_takeover(&self, old_token: &str, generation: usize) -> String {
        self.key(&format!("lease-takeovers/{old_token}.{generation}"))
    }

    /// The history record of the holder that took the lease at `acquired_ms` (ms since
    /// the epoch) with `token`.
    pub fn lease_event(&self, acquired_ms: u64, token: &str) -> String {
        self.key(&format!("leases/{acquired_ms}-{token}.json"))
    }

    /// Written by that holder when it released the lease (before deleting `lease.json`).
    pub fn lease_released(&self, acquired_ms: u64, token: &str) -> String {
        self.key(&format!("leases/{acquired_ms}-{token}.released.json"))
    }

    pub fn status(&self) -> String {
        self.key("status.json")
    }

    pub fn train_log(&self) -> String {
        self.key("train_log.jsonl")
    }

    pub fn metrics_log(&self) -> String {
        self.key("metrics.jsonl")
    }

    /// `holdout.json`: the normal training images a search run holds out (share, seed,
    /// the keys per class).
    pub fn holdout(&self) -> String {
        self.key("holdout.json")
    }

    /// `rungs/<epoch>.json`: the selection metric at a rung of a search
    /// (`run::search::RungRecord`).
    pub fn rung(&self, epoch: usize) -> String {
        self.key(&format!("rungs/{epoch}.json"))
    }

    /// `sweeps/<sweep>/search/<id>.<rung>.json`: the decision of the run's sweep about the
    /// run at rung `rung` (`run::search::Decision`). Spelled here, the one place run keys
    /// are spelled, because the run reads it (how far it may train); `SweepPaths`
    /// parses it back and delegates to this.
    pub fn decision(&self, sweep: &str, rung: usize) -> String {
        format!("sweeps/{sweep}/search/{}.{rung}.json", self.id)
    }

    pub fn final_metrics(&self) -> String {
        self.key("final_metrics.json")
    }

    /// Per class and test image, pixels per bin of a score grid (`eval::pixel_hist`),
    /// written before `final_metrics()`.
    pub fn pixel_histograms(&self) -> String {
        self.key("pixel_histograms.safetensors")
    }

    /// Every attempt's cost record in one object (`run::cost::CostIndex`).
    pub fn cost_index(&self) -> String {
        self.key("cost.json")
    }

    /// Scores, maps, labels and masks of one class's test set.
    pub fn predictions(&self, class: &str) -> String {
        self.key(&format!("predictions/{class}.safetensors"))
    }

    /// The test samples (keys, paths, labels) in the order of `predictions(class)`.
    pub fn predictions_samples(&self, class: &str) -> String {
        self.key(&format!("predictions/{class}.json"))
    }

    /// Folder of the test-time noise evaluations.
    pub fn evals(&self) -> String {
        self.key("evals")
    }

    /// The final model evaluated at test-time noise `scale` (f64 `Display`: 20.0 -> "20").
    pub fn eval_noise(&self, scale: f64) -> String {
        self.key(&format!("evals/test_jitter_{scale}.json"))
    }

    /// The pixel histograms of `eval_noise(scale)` (`eval::pixel_hist`).
    pub fn eval_noise_pixels(&self, scale: f64) -> String {
        self.key(&format!("evals/test_jitter_{scale}.pixels.safetensors"))
    }

    /// Another evaluation at test-time noise `scale`: of checkpoint `checkpoint` (`final`,
    /// `best`, `epoch_<E>`, ...), the `n`-th such (`evals/test_jitter_20.best.1.json`).
    pub fn eval_noise_other(&self, scale: f64, checkpoint: &str, n: usize) -> String {
        self.key(&format!("evals/test_jitter_{scale}.{checkpoint}.{n}.json"))
    }

    /// Folder of every checkpoint of one model ("unified" or a class name).
    pub fn checkpoints(&self, model: &str) -> String {
        self.key(&format!("checkpoints/{model}"))
    }

    /// A checkpoint's key without extension: `.safetensors` (weights + AdamW state) and
    /// `.json` (its record). At an epoch boundary (`step` 0) without the step part.
    pub fn checkpoint_base(&self, model: &str, epoch: usize, step: usize) -> String {
        let dir = self.checkpoints(model);
        if step == 0 {
            format!("{dir}/epoch_{epoch:04}")
        } else {
            format!("{dir}/epoch_{epoch:04}_step_{step:05}")
        }
    }

    /// One panel picture; `stem` is the sample key without its extension, '/' -> '_'.
    pub fn pictures(&self, class: &str, stem: &str) -> String {
        self.key(&format!("pictures/{class}/{stem}.png"))
    }

    /// A job's log, kept with the run once the job ended.
    pub fn logs(&self, job_id: &str) -> String {
        self.key(&format!("logs/{job_id}.log"))
    }

    /// What a job of this run ran, as its launcher submitted it: `ext` "sbatch" (a Slurm
    /// batch script) or "sh" (a local job's command line).
    pub fn job_script(&self, job_id: &str, ext: &str) -> String {
        self.key(&format!("jobs/{job_id}.{ext}"))
    }

    /// Folder of the attempts' cost records.
    pub fn attempts(&self) -> String {
        self.key("attempts")
    }

    /// The cost record of the attempt started at `started_unix` by `host`'s process `pid`
    /// (unique without coordination: one process makes one attempt).
    pub fn attempt(&self, started_unix: u64, host: &str, pid: u32) -> String {
        self.key(&format!("attempts/{started_unix}-{host}-{pid}.json"))
    }

    /// The record (launcher, id, host, log path, nodes) of a job of this run.
    pub fn job_record(&self, job_id: &str) -> String {
        self.key(&format!("jobs/{job_id}.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_todays_literal() {
        let p = RunPaths::new("demo-1a2b3c4d");
        assert_eq!(p.id(), "demo-1a2b3c4d");
        assert_eq!(p.prefix(), "runs/demo-1a2b3c4d");
        assert_eq!(p.config(), "runs/demo-1a2b3c4d/config.toml");
        assert_eq!(p.env(), "runs/demo-1a2b3c4d/env.json");
        assert_eq!(p.status(), "runs/demo-1a2b3c4d/status.json");
        assert_eq!(p.import_record(), "runs/demo-1a2b3c4d/import.json");
        assert_eq!(p.lease(), "runs/demo-1a2b3c4d/lease.json");
        assert_eq!(p.train_log(), "runs/demo-1a2b3c4d/train_log.jsonl");
        assert_eq!(p.metrics_log(), "runs/demo-1a2b3c4d/metrics.jsonl");
        assert_eq!(p.final_metrics(), "runs/demo-1a2b3c4d/final_metrics.json");
        assert_eq!(p.pixel_histograms(), "runs/demo-1a2b3c4d/pixel_histograms.safetensors");
        assert_eq!(p.cost_index(), "runs/demo-1a2b3c4d/cost.json");
        assert_eq!(p.predictions("bottle"), "runs/demo-1a2b3c4d/predictions/bottle.safetensors");
        assert_eq!(p.predictions_samples("bottle"), "runs/demo-1a2b3c4d/predictions/bottle.json");
        assert_eq!(p.evals(), "runs/demo-1a2b3c4d/evals");
        assert_eq!(p.eval_noise(20.0), "runs/demo-1a2b3c4d/evals/test_jitter_20.json");
        assert_eq!(p.eval_noise(12.5), "runs/demo-1a2b3c4d/evals/test_jitter_12.5.json");
        assert_eq!(p.eval_noise(0.0), "runs/demo-1a2b3c4d/evals/test_jitter_0.json");
        assert_eq!(p.eval_noise_pixels(12.5), "runs/demo-1a2b3c4d/evals/test_jitter_12.5.pixels.safetensors");
        assert_eq!(p.checkpoints("unified"), "runs/demo-1a2b3c4d/checkpoints/unified");
        assert_eq!(p.checkpoint_base("unified", 3, 0), "runs/demo-1a2b3c4d/checkpoints/unified/epoch_0003");
        assert_eq!(p.checkpoint_base("unified", 3, 12), "runs/demo-1a2b3c4d/checkpoints/unified/epoch_0003_step_00012");
        assert_eq!(
            format!("{}.safetensors", p.checkpoint_base("unified", 3, 12)),
            "runs/demo-1a2b3c4d/checkpoints/unified/epoch_0003_step_00012.safetensors"
        );
        assert_eq!(p.checkpoint_base("bottle", 12345, 0), "runs/demo-1a2b3c4d/checkpoints/bottle/epoch_12345");
        assert_eq!(p.pictures("bottle", "test_broken_000"), "runs/demo-1a2b3c4d/pictures/bottle/test_broken_000.png");
        assert_eq!(p.logs("4711"), "runs/demo-1a2b3c4d/logs/4711.log");
        assert_eq!(p.logs("4711_3"), "runs/demo-1a2b3c4d/logs/4711_3.log");
        assert_eq!(p.job_script("4711_3", "sbatch"), "runs/demo-1a2b3c4d/jobs/4711_3.sbatch");
        assert_eq!(p.job_script("90210", "sh"), "runs/demo-1a2b3c4d/jobs/90210.sh");
        assert_eq!(p.job_record("4711_3"), "runs/demo-1a2b3c4d/jobs/4711_3.json");
        assert_eq!(p.attempts(), "runs/demo-1a2b3c4d/attempts");
        assert_eq!(p.attempt(1700000000, "node7", 4242), "runs/demo-1a2b3c4d/attempts/1700000000-node7-4242.json");
    }

    #[test]
    fn listed_keys_parse_back() {
        let p = RunPaths::new("demo.v2-1a2b3c4d");
        let cases = [
            (p.config(), RunKey::Config),
            (p.env(), RunKey::Env),
            (p.import_record(), RunKey::ImportRecord),
            (p.lease(), RunKey::Lease),
            (p.status(), RunKey::Status),
            (p.train_log(), RunKey::TrainLog),
            (p.metrics_log(), RunKey::MetricsLog),
            (p.final_metrics(), RunKey::FinalMetrics),
            (p.pixel_histograms(), RunKey::PixelHistograms),
            (p.cost_index(), RunKey::CostIndex),
            (
                p.attempt(1700000000, "gpu-node-7", 4242),
                RunKey::Attempt { started_unix: 1700000000, host: "gpu-node-7".into(), pid: 4242 },
            ),
            (p.attempt(1, "", 2), RunKey::Attempt { started_unix: 1, host: String::new(), pid: 2 }),
            (
                p.lease_event(1700000000123, "ab12"),
                RunKey::LeaseEvent { acquired_ms: 1700000000123, token: "ab12".into() },
            ),
            (p.lease_released(7, "ab12"), RunKey::LeaseReleased { acquired_ms: 7, token: "ab12".into() }),
            (p.lease_takeover("ab12", 3), RunKey::Other("lease-takeovers/ab12.3".into())),
            (p.eval_noise(20.0), RunKey::EvalNoise { scale: 20.0 }),
            (p.eval_noise(12.5), RunKey::EvalNoise { scale: 12.5 }),
            (p.eval_noise(0.0), RunKey::EvalNoise { scale: 0.0 }),
            (p.eval_noise_pixels(20.0), RunKey::EvalNoisePixels { scale: 20.0 }),
            (p.rung(27), RunKey::Rung { epoch: 27 }),
            (
                p.eval_noise_other(12.5, "best", 1),
                RunKey::EvalNoiseOther { scale: 12.5, checkpoint: "best".into(), n: 1 },
            ),
            (
                p.eval_noise_other(20.0, "epoch_3", 2),
                RunKey::EvalNoiseOther { scale: 20.0, checkpoint: "epoch_3".into(), n: 2 },
            ),
            (p.logs("4711"), RunKey::Other("logs/4711.log".into())),
            (
                format!("{}.json", p.checkpoint_base("unified", 3, 0)),
                RunKey::Other("checkpoints/unified/epoch_0003.json".into()),
            ),
        ];
        for (key, kind) in cases {
            assert_eq!(RunPaths::parse(&key), Some((p.clone(), kind)), "{key}");
        }
        for key in ["sweeps/s/manifest.json", "runs/", "runs/x", "runs//status.json", "runs/x/"] {
            assert_eq!(RunPaths::parse(key), None, "{key}");
        }
        // Names that do not read as their folder's kind are not records of that kind.
        for rest in [
            "attempts/notes.json",
            "attempts/1-host-2.txt",
            "attempts/x/1-host-2.json",
            "evals/other.json",
            "evals/test_jitter_nan.json",
            "evals/test_jitter_12.5.1.json",
        ] {
            let key = format!("runs/x/{rest}");
            assert_eq!(RunPaths::parse(&key), Some((RunPaths::new("x"), RunKey::Other(rest.into()))), "{key}");
        }
        assert_eq!(RunPaths::ROOT, "runs/");
    }

    #[test]
    fn a_prefix_names_its_run() {
        assert_eq!(RunPaths::from_prefix("runs/demo-1a2b3c4d"), Some(RunPaths::new("demo-1a2b3c4d")));
        assert_eq!(RunPaths::from_prefix("runs/demo-1a2b3c4d/"), Some(RunPaths::new("demo-1a2b3c4d")));
        assert_eq!(RunPaths::from_prefix("runs/"), None);
        assert_eq!(RunPaths::from_prefix("sweeps/x"), None);
        assert_eq!(RunPaths::from_prefix("runs/a/checkpoints"), None);
    }
}
