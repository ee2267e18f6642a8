//! One run, end to end: scan the dataset, fill or reuse the feature cache, train one
//! model (unified) or one per class (separate), evaluate every K epochs, and keep
//! everything in the store under `runs/<run id>/` (the layout: [`paths`]).
//!
//! With several ranks (mpirun / srun), every rank trains on its shard and only rank 0
//! writes to the store. A restarted run resumes from its newest valid checkpoint: the
//! data order and the jitter noise are functions of (seed, epoch, sample), so the model,
//! AdamW state and (epoch, step) are the whole state, and a resumed run ends bit-identical
//! to an uninterrupted one. SIGTERM / SIGUSR1 (Slurm's warning) finish the current step,
//! checkpoint, and exit with `EXIT_REQUEUE`.
//!
//! This file is the order of things (`execute` and its steps); the pieces live beside it:
//! - [`paths`]      every store key of a run
//! - [`checkpoint`] saving / verifying checkpoints, and when to save and what to keep
//! - [`records`]    status, logs, final metrics, environment: what a run says about itself
//! - [`evaluate`]   sharded prediction, metrics, noise re-evaluation, evaluating a run
//! - `outputs`      the final outputs: predictions, pictures, final metrics
//! - [`cost`]       what each attempt cost; [`lease`] one writer per run
//! - [`trained`]    a trained model loaded for inference (eval, predict, import)

// RunError wraps errors unboxed (matched by type); returned once per run, its size is moot.
pub mod checkpoint;
pub mod cost;
pub mod error;
pub mod evaluate;
pub mod lease;
mod outputs;
pub mod paths;
pub mod records;
pub mod search;
pub mod trained;

pub use checkpoint::{
    latest_checkpoint, load_model_weights, model_weights, CheckpointChoice, CheckpointPolicy, CheckpointRecord,
    Checkpointer,
};
pub use error::RunError;
pub use evaluate::{evaluate_trained, reevaluate, EvaluatedCheckpoint, Reevaluation};
pub use paths::{RunKey, RunPaths};
pub use records::{
    discard, environment, mark_failed_unless_recorded, stored_config, FinalMetrics, RunState, RunStatus, EXIT_REQUEUE,
};
pub use trained::{load_trained, TrainedModel, TrainedWeights, WeightsMismatch};

use crate::backbone::BackboneIdentity;
use crate::config::{DeviceSpec, RunConfig, Setting};
use crate::data::{scan, DatasetIndex};
use crate::dist::{self, Collective, WorldInfo};
use crate::eval::Predictions;
use crate::features::{load_or_compute, CacheStats, ClassFeatures};
use crate::progress::Progress;
use crate::store::{tensors, Store};
use crate::train::Trainer;
use cost::{Outcome, Phase, PhaseTimer};
use error::Result;
use evaluate::{evaluate_epoch, load_masks};
use outputs::write_final_outputs;
use records::{RunLogs, StatusWriter};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tch::{Device, Tensor};

/// Stable id of a run: its name and a hash of its resolved config.
pub fn run_id(cfg: &RunConfig) -> String {
    cfg.run_id()
}

/// What a run returns to its caller. `final_metrics` is None on ranks other than 0 and
/// when the run was preempted.
pub struct RunOutcome {
    pub run_id: String,
    pub prefix: String,
    pub final_metrics: Option<FinalMetrics>,
    pub preempted: bool,
    /// A search run that stopped at this rung epoch, waiting for its sweep.
    pub paused_at: Option<usize>,
}

impl RunOutcome {
    fn new(paths: &RunPaths, final_metrics: Option<FinalMetrics>, preempted: bool) -> Self {
        Self { run_id: paths.id().to_string(), prefix: paths.prefix(), final_metrics, preempted, paused_at: None }
    }
}

pub struct RunOptions {
    pub progress: Progress,
    /// Run again from scratch even if the store holds this run (complete or not).
    pub force: bool,
    /// Raised by SIGTERM / SIGUSR1: checkpoint after the current step and stop.
    pub stop: Arc<AtomicBool>,
}

impl RunOptions {
    pub fn new(progress: Progress, force: bool) -> Self {
        Self { progress, force, stop: Arc::new(AtomicBool::new(false)) }
    }
}

/// The device of a single-process command (features, eval) for `train.device`.
pub fn resolve_device(spec: DeviceSpec) -> Result<Device> {
    Ok(WorldInfo::SINGLE.device(spec)?)
}

/// The models to train, in class order, each with the indices of its classes
/// (`Setting::model_name`: "unified", or one model per class named after it).
fn model_groups(setting: Setting, features: &[(String, ClassFeatures)]) -> Vec<(String, Vec<usize>)> {
    let mut groups: Vec<(String, Vec<usize>)> = vec![];
    for (i, (class, _)) in features.iter().enumerate() {
        let name = setting.model_name(class).to_string();
        match groups.iter_mut().find(|(g, _)| *g == name) {
            Some((_, members)) => members.push(i),
            None => groups.push((name, vec![i])),
        }
    }
    groups
}

/// Trains and evaluates one run (resuming it if the store holds a partial one); on any
/// error the run is marked failed with the rank and the error.
pub fn execute(cfg: &RunConfig, opts: &RunOptions) -> Result<RunOutcome> {
    let timer = PhaseTimer::new();
    let world = WorldInfo::from_env()?;
    // Before anything is connected or written: a world size that does not split the
    // global batch would train another batch than the configured one.
    cfg.train.per_rank_batch(world.world_size)?;
    let device = world.device(cfg.train.device)?;
    let coll = dist::connect(world, device)?;
    let store = Store::open(&cfg.store)?;
    let paths = RunPaths::of(cfg);
    let root = world.rank == 0;
    if !opts.force {
        if let Some(fm) = records::completed(&store, &paths)? {
            tracing::info!(
                run = paths.id(),
                "run already complete in {}; not training again (use --force)",
                store.url()
            );
            return Ok(RunOutcome::new(&paths, Some(fm), false));
        }
    }
    // One writer per run: rank 0 takes the run's lease before anything is written, --force
    // included (it must not clear a run another process is training). A refusal writes
    // nothing: the run belongs to its holder.
    let lease = match root.then(|| lease::Lease::acquire(&store, &paths)).transpose() {
        Ok(l) => l,
        Err(e) => {
            if world.world_size > 1 {
                eprintln!("error: {}", crate::error_text::chain(&e));
                coll.abort(1);
            }
            return Err(e.into());
        }
    };
    if opts.force && root {
        discard(&store, &paths)?;
    }
    // With --force, no rank may start before rank 0 has cleared the old run.
    coll.barrier()?;
    let until = search::until_epoch(&store, cfg, &paths, coll.as_ref(), root)?;
    let status = StatusWriter::new(&store, &paths, root);
    status.write(RunState::Running, 0, None)?;
    timer.set_lease(lease.as_ref().map(|l| l.token()));
    let checkpoints = Checkpointer::new(&store, &paths).with_lease(lease.as_ref().map(|l| l.token()));
    let run = Run {
        cfg,
        opts,
        store: &store,
        paths: &paths,
        status: &status,
        coll: coll.as_ref(),
        device,
        root,
        checkpoints,
        policy: CheckpointPolicy::new(cfg),
        lease: lease.as_ref(),
        timer: &timer,
        until,
    };
    // A panic (libtorch raises its errors, an allocation failure among them, as panics
    // through tch) ends the run like any error: recorded as failed, with its message.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| execute_inner(&run)))
        .unwrap_or_else(|payload| Err(panic_error(cfg, payload)));
    // The attempt's cost, before "complete": a run that says complete has its record.
    let outcome = match &result {
        Ok(Finished::Complete(_)) => Outcome::Complete,
        Ok(Finished::Preempted) => Outcome::Preempted,
        Ok(Finished::Paused) => Outcome::Paused,
        Err(e) if e.is_outage() => Outcome::Outage,
        Err(_) => Outcome::Failed,
    };
    if root {
        timer.record(&store, &paths, outcome, device, world.world_size, cfg);
    }
    match result {
        Ok(Finished::Complete(Some(fm))) => {
            status.write(RunState::Complete, fm.epoch, None)?;
            Ok(RunOutcome::new(&paths, Some(fm), false))
        }
        Ok(Finished::Complete(None)) => Ok(RunOutcome::new(&paths, None, false)),
        Ok(Finished::Preempted) => Ok(RunOutcome::new(&paths, None, true)),
        Ok(Finished::Paused) => {
            status.write(RunState::Paused, until, None)?;
            Ok(RunOutcome { paused_at: Some(until), ..RunOutcome::new(&paths, None, false) })
        }
        Err(e) => {
            let reason = if world.world_size > 1 {
                format!("rank {} of {}: {}", world.rank, world.world_size, crate::error_text::chain(&e))
            } else {
                crate::error_text::chain(&e)
            };
            // A store that stayed unreachable is the infrastructure's failure, not the
            // run's: recorded as such (the coordinator requeues it without using up an
            // attempt) if the store takes the write now.
            let infra = e.is_outage();
            let state = if infra { RunState::Infra } else { RunState::Failed };
            // Best effort: the original error matters more than a failed status write.
            if let Err(w) = status.write(state, 0, Some(reason.clone())) {
                if infra {
                    eprintln!("warning: the run's status could not be recorded either ({w}); it still says what it said before the store stopped answering");
                }
            }
            if world.world_size > 1 {
                // Take the other ranks down now instead of leaving them in a collective.
                eprintln!("error: {reason}");
                coll.abort(1);
            }
            Err(e)
        }
    }
}

/// A panic's message as an error; an allocation failure names the config keys that
/// size memory.
fn panic_error(cfg: &RunConfig, payload: Box<dyn std::any::Any + Send>) -> RunError {
    let full = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into());
    // libtorch's messages carry a C++ stack trace ("\nframe #0: ..."): keep the first lines.
    let msg =
        full.split("\\nframe #").next().unwrap_or(&full).split("\nframe #").next().unwrap_or(&full).trim().to_string();
    let lower = msg.to_lowercase();
    if lower.contains("alloc") || lower.contains("out of memory") {
        RunError::OutOfMemory(format!(
            "{msg}\n(memory grows with backbone.image_size = {} (4th power), train.batch_size = {}, eval.batch_size = {}, \
             backbone.batch_size = {}: lower one of them)",
            cfg.backbone.image_size,
            cfg.train.batch_size,
            cfg.eval.batch_size,
            cfg.backbone.batch_size
        ))
    } else {
        RunError::Panicked(msg)
    }
}

/// `ras features`: fills the feature cache of `cfg`'s dataset + backbone (the sweep's
/// feature-cache job), and records what that cost as an attempt of `cfg`'s run, so a
/// sweep's cost records include its feature extraction.
pub fn fill_feature_cache(cfg: &RunConfig, progress: &Progress) -> Result<(Vec<(String, ClassFeatures)>, CacheStats)> {
    let timer = PhaseTimer::feature_cache();
    let store = Store::open(&cfg.store)?;
    let device = resolve_device(cfg.train.device)?;
    let result = timer.time(Phase::Features, || -> Result<_> {
        let index = scan(&cfg.dataset)?;
        index.check_headers()?;
        let (feats, stats) = load_or_compute(&store, &cfg.backbone, device, &index, progress)?;
        let scanned = index.classes.iter().map(|(_, s)| s.train.len() + s.test.len()).sum::<usize>();
        timer.set_features(stats.images_computed as u64, scanned as u64);
        Ok((feats, stats))
    });
    let outcome = if result.is_ok() { Outcome::Complete } else { Outcome::Failed };
    // Also when the cache was full already: the scan and the load are cost too.
    timer.record(&store, &RunPaths::of(cfg), outcome, device, 1, cfg);
    result
}

/// How `execute_inner` ended (errors aside). `Complete(None)`: a rank other than 0.
// One value per run, returned once: the size of the metrics variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Finished {
    Complete(Option<FinalMetrics>),
    Preempted,
    /// A search run at the rung its sweep allows (`RunState::Paused`).
    Paused,
}

/// How training one model ended (errors aside).
enum Trained {
    Done,
    Preempted,
}

/// What every step of a run needs: the config, this rank's place, where things go.
struct Run<'a> {
    cfg: &'a RunConfig,
    opts: &'a RunOptions,
    store: &'a Store,
    paths: &'a RunPaths,
    status: &'a StatusWriter<'a>,
    coll: &'a dyn Collective,
    device: Device,
    /// Rank 0: the only rank that writes to the store (but a failure).
    root: bool,
    checkpoints: Checkpointer<'a>,
    policy: CheckpointPolicy,
    /// Rank 0's lease on the run; checked before each checkpoint and the final outputs.
    lease: Option<&'a lease::Lease>,
    /// This attempt's phase times and counts (its cost record).
    timer: &'a PhaseTimer,
    /// The epoch this attempt trains to: `train.epochs`, or a search run's rung.
    until: usize,
}

impl Run<'_> {
    /// Whether the models are evaluated after epoch `done`: every `train.eval_every`
    /// epochs and at the last one (the final metrics).
    fn is_eval(&self, done: usize) -> bool {
        done.is_multiple_of(self.cfg.train.eval_every)
            || done == self.cfg.train.epochs
            || self.cfg.search.as_ref().is_some_and(|s| s.on_test_set() && s.rungs.contains(&done))
    }

    /// An error when another process took the run over (this one was thought dead).
    fn check_lease(&self) -> Result<()> {
        Ok(self.lease.map_or(Ok(()), |l| l.check())?)
    }

    /// Saves a checkpoint, then deletes what the policy does not keep (rank 0 only).
    fn save_checkpoint(
        &self,
        model: &str,
        epoch: usize,
        step: usize,
        score: Option<f64>,
        trainer: &Trainer,
    ) -> Result<()> {
        self.check_lease()?;
        self.checkpoints.save(model, epoch, step, score, trainer)?;
        self.checkpoints.prune(model, &self.policy).map(|()| self.record_attempt())
    }

    /// Rank 0: this attempt's cost record so far (outcome "interrupted" until it ends).
    fn record_attempt(&self) {
        let ranks = self.coll.world().world_size;
        if self.root {
            self.timer.record(self.store, self.paths, Outcome::Interrupted, self.device, ranks, self.cfg);
        }
    }
}

/// The inputs of training and evaluation, loaded once per run.
struct Prepared {
    index: DatasetIndex,
    features: Vec<(String, ClassFeatures)>,
    cache: CacheStats,
    /// Feature channels (the model's input width).
    channels: i64,
    backbone_pretrained: bool,
    /// Ground-truth masks per class (rank 0 only: the others do not compute metrics).
    masks: Vec<Tensor>,
    /// Per class, the normal training images a search holds out (not in `features`'
    /// training rows); empty tensors without a held-out split.
    holdout: Vec<Tensor>,
}

/// The run's steps in order; every rank runs them (the collectives are inside).
fn execute_inner(run: &Run) -> Result<Finished> {
    run.record_attempt();
    let data = prepare(run)?;
    let mut logs = restore_logs(run)?;
    let mut final_preds: BTreeMap<String, Predictions> = BTreeMap::new();
    // Held-out loss at the rung this attempt ends on, summed over models.
    let mut held_out = (0.0, 0usize);
    for (model, members) in model_groups(run.cfg.train.setting, &data.features) {
        if let Trained::Preempted =
            train_model(run, &data, &model, &members, &mut logs, &mut final_preds, &mut held_out)?
        {
            return Ok(Finished::Preempted);
        }
    }
    if let (true, Some(search)) = (run.root, &run.cfg.search) {
        if let Some(rung) = search.rungs.iter().position(|&e| e == run.until) {
            search::record_rung(run, search, rung, &logs, held_out)?;
        }
    }
    if run.until < run.cfg.train.epochs {
        return Ok(Finished::Paused);
    }
    if !run.root {
        return Ok(Finished::Complete(None));
    }
    run.check_lease()?;
    let fm = run.timer.time(Phase::Eval, || write_final_outputs(run, data, &logs, &final_preds))?;
    Ok(Finished::Complete(Some(fm)))
}

/// Step 1: record the config, scan the dataset, fill the feature cache (rank 0; the
/// others then read it: no rank computes twice), record the environment, load the masks.
fn prepare(run: &Run) -> Result<Prepared> {
    let Run { cfg, store, coll, device, root, .. } = *run;
    if root {
        store.put(&run.paths.config(), cfg.to_toml())?;
    }
    let (index, features, cache) = run.timer.time(Phase::Features, || -> Result<_> {
        let index = scan(&cfg.dataset)?;
        index.check_headers()?;
        let mut loaded = None;
        if root {
            loaded = Some(load_or_compute(store, &cfg.backbone, device, &index, &run.opts.progress)?);
        }
        coll.barrier()?;
        let (features, cache) = match loaded {
            Some(l) => l,
            None => load_or_compute(store, &cfg.backbone, device, &index, &Progress::hidden())?,
        };
        Ok((index, features, cache))
    })?;
    let scanned = index.classes.iter().map(|(_, s)| s.train.len() + s.test.len()).sum::<usize>();
    run.timer.set_features(cache.images_computed as u64, scanned as u64);
    let identity = BackboneIdentity::resolve(&cfg.backbone)?;
    record_environment(run, &identity, &cache)?;
    let masks = if root { load_masks(&index, cfg.backbone.image_size)? } else { vec![] };
    let channels = features[0].1.train.size()[1];
    let mut features = features;
    let holdout = search::hold_out(run, &index, &mut features)?;
    Ok(Prepared { index, features, cache, channels, backbone_pretrained: identity.pretrained, masks, holdout })
}

/// `env.json`, with where every rank runs (collective: all ranks take part), kept with
/// the run so a plan can be checked against what the cluster did.
fn record_environment(run: &Run, identity: &BackboneIdentity, cache: &CacheStats) -> Result<()> {
    let world = run.coll.world();
    let here = dist::placement_of_this_rank(world).to_string();
    let ranks = dist::gather_text(run.coll, &here, run.device)?;
    if run.root {
        let ranks: Vec<serde_json::Value> = ranks
            .unwrap_or_default()
            .iter()
            .map(|t| serde_json::from_str(t).unwrap_or(serde_json::Value::String(t.clone())))
            .collect();
        let mut env = environment(run.device, identity, cache);
        env["precision"] = crate::train::Precision::resolve(run.cfg.train.precision, run.device).as_str().into();
        env["world"] =
            serde_json::json!({"world_size": world.world_size, "collective": run.coll.name(), "ranks": ranks});
        // What one optimisation step trains: execute() refused any split that is not exact.
        env["batch"] = serde_json::json!({
            "global": run.cfg.train.batch_size,
            "per_rank": run.cfg.train.per_rank_batch(world.world_size)?,
        });
        run.store.put_json(&run.paths.env(), &env)?;
    }
    Ok(())
}

/// Step 2: the metrics and training logs of an earlier attempt, which a resumed run
/// extends (rank 0, and not with --force: the store was cleared then).
fn restore_logs(run: &Run) -> Result<RunLogs> {
    if run.root && !run.opts.force {
        RunLogs::load(run.store, run.paths)
    } else {
        Ok(RunLogs::default())
    }
}

/// Cached training features stay on the GPU for the whole run when they fit in
/// `RAS_DEVICE_FEATURES_GB` (default 16; MVTec-AD's are 0.77 GB, and all four datasets'
/// fit on any data-centre GPU): each step then gathers its batch and draws its noise
/// there, with no copy from the host. Otherwise (and on a CPU) they stay in host memory.
fn on_training_device(features: Tensor, device: Device) -> Tensor {
    if !device.is_cuda() {
        return features;
    }
    let budget_gb = std::env::var("RAS_DEVICE_FEATURES_GB").ok().and_then(|v| v.parse::<f64>().ok()).unwrap_or(16.0);
    let gb = (features.numel() * features.kind().elt_size_in_bytes()) as f64 / (1u64 << 30) as f64;
    if gb <= budget_gb {
        features.to_device(device)
    } else {
        tracing::info!("training features ({gb:.2} GB) exceed RAS_DEVICE_FEATURES_GB={budget_gb}: kept in host memory, batches copied asynchronously");
        features
    }
}

/// Step 3, once per model: train `model` on the classes `members` from its newest valid
/// checkpoint to the last epoch, evaluating and checkpointing on the way.
fn train_model(
    run: &Run,
    data: &Prepared,
    model: &str,
    members: &[usize],
    logs: &mut RunLogs,
    final_preds: &mut BTreeMap<String, Predictions>,
    held_out: &mut (f64, usize),
) -> Result<Trained> {
    let (cfg, root, epochs, until) = (run.cfg, run.root, run.cfg.train.epochs, run.until);
    let train_feats = on_training_device(
        Tensor::cat(&members.iter().map(|&i| data.features[i].1.train.shallow_clone()).collect::<Vec<_>>(), 0),
        run.device,
    );
    // (Timed as training: building the trainer runs a backward pass, which pays the
    // process's one-off kernel set-up that would otherwise fall on the first step.)
    let mut trainer = run.timer.time(Phase::Train, || {
        Trainer::new(&cfg.model, &cfg.train, cfg.seed, data.channels, cfg.backbone.image_size / 16, run.device)
    })?;
    let n = train_feats.size()[0] as usize;
    let steps = trainer.steps_per_epoch(n, run.coll.world().world_size)?;
    let (mut epoch, mut step) = resume(run, model, &mut trainer)?;
    let resumed_finished = epoch == epochs;
    logs.keep_train_until(model, epoch);
    trainer.sync_from_root(run.coll)?;
    // Resumed at an eval epoch whose metrics are not in the log (they were the torn tail
    // RunLogs::load dropped): evaluate the checkpoint again, as the run did at the time,
    // so metrics.jsonl covers every eval epoch. Rank 0 alone holds the logs, so it
    // decides for every rank (evaluation is collective).
    if epoch > 0 && step == 0 && epoch < epochs && run.is_eval(epoch) {
        let have = |i: &usize| logs.by_epoch.get(&epoch).is_some_and(|m| m.contains_key(&data.features[*i].0));
        let mut missing = [u8::from(root && !members.iter().all(have))];
        run.coll.broadcast_bytes(&mut missing, 0)?;
        if missing[0] == 1 {
            tracing::warn!(model, epoch, "metrics of the checkpoint's epoch missing from the log; evaluating it again");
            evaluate_epoch(run, data, &trainer, members, epoch, logs, final_preds)?;
        }
    }
    let bar = run.opts.progress.bar((n * until) as u64, &format!("train {model}"));
    bar.set_position((n * epoch.min(until)) as u64);
    while epoch < until {
        let res = run.timer.time(Phase::Train, || {
            trainer.epoch(&train_feats, epoch, step, run.coll, &run.opts.stop, &mut |k| bar.inc(k as u64))
        })?;
        // Images of the steps this call ran (a resumed or stopped epoch: pro rata).
        run.timer.add_trained((n * res.steps_done.saturating_sub(step) / steps.max(1)) as u64);
        if res.stopped && res.steps_done < steps {
            if root {
                run.save_checkpoint(model, epoch, res.steps_done, None, &trainer)?;
                run.status.write(RunState::Preempted, epoch, None)?;
            }
            tracing::warn!(epoch, step = res.steps_done, "stopped by signal after a checkpoint; requeue to resume");
            return Ok(Trained::Preempted);
        }
        let done = epoch + 1;
        bar.set_message(format!("epoch {done}/{epochs} loss {:.4}", res.loss));
        if !res.loss.is_finite() {
            return Err(RunError::Diverged { loss: res.loss, epoch: done, model: model.to_string() });
        }
        logs.push_train(model, done, res.loss, crate::train::lr_at(&cfg.train, epoch));
        let score = if run.is_eval(done) {
            evaluate_epoch(run, data, &trainer, members, done, logs, final_preds)?
        } else {
            None
        };
        let stop_now = res.stopped; // signal arrived during the epoch's last step
                                    // (A rung is always checkpointed: a promoted run resumes from it.)
        if root && run.policy.save_after_epoch(done, stop_now || done == until) {
            logs.write_train_log(run.store, run.paths)?;
            run.save_checkpoint(model, done, 0, score, &trainer)?;
            run.status.write(RunState::Running, done, None)?;
        }
        (epoch, step) = (done, 0);
        if stop_now && done < epochs {
            if root {
                run.status.write(RunState::Preempted, done, None)?;
            }
            return Ok(Trained::Preempted);
        }
    }
    // A model that had already finished before a restart: recompute its final
    // predictions, and its last-epoch metrics from them, never the earlier attempt's
    // (the predictions stored and the metrics reported must agree). The condition is the
    // same on every rank (collective calls inside).
    if resumed_finished {
        evaluate_epoch(run, data, &trainer, members, epochs, logs, final_preds)?;
    }
    // A search's held-out loss at the rung this attempt ends on (rank 0 records it).
    if root && cfg.search.as_ref().is_some_and(|s| s.holdout.is_some() && s.rungs.contains(&epoch)) {
        let held = Tensor::cat(&members.iter().map(|&i| data.holdout[i].shallow_clone()).collect::<Vec<_>>(), 0);
        let (sum, images) = trainer.reconstruction_loss(&held, cfg.eval.batch_size);
        held_out.0 += sum;
        held_out.1 += images;
    }
    bar.finish_and_clear();
    Ok(Trained::Done)
}

/// Loads `model`'s newest valid checkpoint into `trainer` (not with --force); the
/// (completed epochs, steps into the next) to go on from, (0, 0) without one.
fn resume(run: &Run, model: &str, trainer: &mut Trainer) -> Result<(usize, usize)> {
    if run.opts.force {
        return Ok((0, 0));
    }
    let Some((rec, bytes)) = run.checkpoints.latest_valid(model)? else { return Ok((0, 0)) };
    trainer
        .load_state(tensors::decode(&bytes)?)
        .map_err(|source| RunError::CheckpointState { weights: rec.weights.clone(), source })?;
    let (epoch, step) = (rec.epoch, rec.step);
    tracing::info!(model, epoch, step, "resuming from checkpoint");
    Ok((epoch, step))
}
